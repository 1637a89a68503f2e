"""Writing and verifying the audit chain."""

from __future__ import annotations

import contextvars
import enum
import functools
import hmac
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from django.db import transaction
from django.utils import timezone

from carevault.crypto import canonical_bytes
from carevault.web.clientinfo import ClientInfo

from . import anchor, keys
from .models import AuditEntry, AuditHead

GENESIS = "0" * 64

logger = logging.getLogger(__name__)

# Told about every appended entry and the client it was written for (None: written without one;
# the security layer then looks to the request being served): the security layer turns audited
# actions into security events (carevault.web.securitycore registers itself when the app is ready).
Observer = Callable[["AuditEntry", "ClientInfo | None"], None]


class When(enum.Enum):
    """When an observer is told about an entry; every registration says which."""

    # Once the action's transaction commits (at once when there is none): the observer sees
    # only actions that happened, and its work is no part of the action's transaction. The
    # default, as Zulip sends its events.
    AFTER_COMMIT = "after_commit"
    # Right after the entry is written, inside the action's transaction: only for an observer
    # whose answer must stop the request being served (a hard rule that gates an attacker).
    IN_TRANSACTION = "in_transaction"


AFTER_COMMIT = When.AFTER_COMMIT
IN_TRANSACTION = When.IN_TRANSACTION

_observers: list[tuple[Observer, When]] = []
# Set while an observer writes entries of its own (its responses): those are what it does, not
# what it watches, and are offered to no observer (never a loop).
_unobserved: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "carevault_audit_unobserved", default=False
)


class Outcome:
    OK = "ok"
    DENIED = "denied"
    FAILED = "failed"
    ALERT = "alert"


def _entry_fields(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor_id": entry.actor_id,
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "outcome": entry.outcome,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "patient_id": entry.patient_id,
        "address": entry.address,
        "details": entry.details,
    }


def _digest(prev: str, entry: AuditEntry) -> str:
    key = keys.keys().chain_secret().expose()
    message = prev.encode() + b"\x00" + canonical_bytes(_entry_fields(entry))
    return hmac.new(key, message, sha256).hexdigest()


def _storable(value: Any) -> Any:
    """``value`` as every supported database stores it unchanged.

    PostgreSQL refuses NUL in text and JSON (SQLite takes it). Audited values include what a
    client sent (a probed path, an attempted username), so without this a NUL in a request
    would make the audit write fail, on PostgreSQL only, and the probe would leave no entry.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


def _text(value: Any, limit: int) -> str:
    # Cut to the column's length: PostgreSQL enforces it (and fails the write), SQLite does not.
    return str(_storable(str(value)))[:limit]


def record(
    action: str,
    *,
    actor: Any = None,
    outcome: str = Outcome.OK,
    target: Any = None,
    target_type: str = "",
    target_id: str = "",
    patient_id: Any = "",
    details: dict[str, Any] | None = None,
    client: ClientInfo | None = None,
) -> AuditEntry:
    """Append one entry. Call inside the action's transaction so both land or neither does.

    ``client`` is who the action was done for (its address is the entry's); None when written
    without one (a value found tampered while a page is built): the security layer then ties
    the entry to the request being served, if any."""
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    with transaction.atomic():
        head, _ = AuditHead.objects.select_for_update().get_or_create(id=1)
        entry = AuditEntry(
            seq=head.seq + 1,
            # Microseconds dropped: the timestamp must survive every database round trip intact.
            at=timezone.now().replace(microsecond=0),
            actor_id=actor.pk if actor is not None else None,
            actor=_text(actor.username, 150) if actor is not None else "",
            role=_text(getattr(actor, "role", ""), 16) if actor is not None else "",
            action=_text(action, 64),
            outcome=_text(outcome, 16),
            target_type=_text(target_type, 64),
            target_id=_text(target_id, 64),
            patient_id=_text(patient_id or "", 64),
            address=_text(client.address if client is not None else "", 64),
            details=_storable(details or {}),
            prev_digest=head.digest,
        )
        entry.digest = _digest(head.digest, entry)
        entry.save()
        head.seq, head.digest = entry.seq, entry.digest
        head.save(update_fields=["seq", "digest"])
        if entry.seq % anchor.CHECKPOINT_EVERY == 0:
            # Anchored outside the database once the entry is committed (never a rolled-back
            # head, which would then read as a rewound chain).
            transaction.on_commit(anchor.write_checkpoint_quietly)
    _notify(entry, client)
    return entry


def add_observer(observer: Observer, *, when: When = AFTER_COMMIT) -> None:
    """Tell ``observer`` about every entry appended from now on, ``when`` it says."""
    remove_observer(observer)
    _observers.append((observer, when))


def remove_observer(observer: Observer) -> None:
    _observers[:] = [(o, w) for o, w in _observers if o != observer]


@contextmanager
def unobserved() -> Iterator[None]:
    """Entries written inside are offered to no observer (an observer's own writes)."""
    token = _unobserved.set(True)
    try:
        yield
    finally:
        _unobserved.reset(token)


def _notify(entry: AuditEntry, client: ClientInfo | None) -> None:
    """Tell the observers, each when it registered for: a synchronous one now, inside the
    caller's transaction; the others once it commits (never, if it rolls back)."""
    if _unobserved.get():
        return
    for observer, when in tuple(_observers):
        if when is IN_TRANSACTION:
            _tell(observer, entry, client)
        else:
            transaction.on_commit(functools.partial(_tell, observer, entry, client), robust=True)


def _tell(observer: Observer, entry: AuditEntry, client: ClientInfo | None) -> None:
    """Whatever happens in an observer, the audited action goes on: the entry is written, and
    a failure here is logged, never raised."""
    try:
        observer(entry, client)
    except Exception:
        logger.exception("an audit observer failed on entry %s (%s)", entry.seq, entry.action)


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "problems": self.problems}


def verify_chain() -> ChainReport:
    """Walk the chain in sequence order; report every break (edit, deletion, re-ordering), and
    what contradicts the signed checkpoints outside the database (a wipe, a truncation, a
    rewound or reset head, a forged checkpoint: see :mod:`carevault.web.audit.anchor`)."""
    anchored = anchor.read()
    checkpointed = {int(r["seq"]) for r in anchored.records if r.get("kind") == "audit"}
    digests: dict[int, str] = {}
    problems: list[str] = []
    prev = GENESIS
    expected_seq = 1
    count = 0
    for entry in AuditEntry.objects.order_by("seq").iterator(chunk_size=2000):
        count += 1
        if entry.seq != expected_seq:
            problems.append(f"entry {expected_seq} is missing (next is {entry.seq})")
        if entry.prev_digest != prev:
            problems.append(f"entry {entry.seq} does not follow the entry before it")
        if not hmac.compare_digest(entry.digest, _digest(entry.prev_digest, entry)):
            problems.append(f"entry {entry.seq} was altered")
        if entry.seq in checkpointed:
            digests[entry.seq] = entry.digest
        prev = entry.digest
        expected_seq = entry.seq + 1
    head = AuditHead.objects.filter(id=1).first()
    if head is not None and (head.seq != expected_seq - 1 or head.digest != prev):
        problems.append(f"the chain ends at {expected_seq - 1} but its head says {head.seq}")
    problems += anchor.check(anchored, count, expected_seq - 1, digests)
    return ChainReport(not problems, count, problems)
