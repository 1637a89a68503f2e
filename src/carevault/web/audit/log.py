"""Writing and verifying the audit log.

An entry is appended with its own MAC and a seq the database assigns (no shared row is read or
written: see :func:`_next_seq`); :mod:`carevault.web.audit.sealing` later seals entries in
batches. :func:`verify_chain` checks every entry's MAC, every batch against the entries it
holds, the batches' chain and MACs, the legacy chain (batch 0) link by link, and the database
against the signed checkpoints outside it.
"""

from __future__ import annotations

import collections
import contextvars
import enum
import functools
import hmac
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from carevault.crypto import canonical_bytes
from carevault.modelstore.anchor import AnchorState
from carevault.web.clientinfo import ClientInfo

from . import anchor, keys, sealing
from .models import AuditBatch, AuditEntry, AuditHead

GENESIS = sealing.GENESIS

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


_entry_fields = sealing.entry_fields


def _digest(prev: str, entry: AuditEntry) -> str:
    """A legacy entry's chain digest (entries written before batches)."""
    key = keys.keys().chain_secret().expose()
    message = prev.encode() + b"\x00" + canonical_bytes(_entry_fields(entry))
    return hmac.new(key, message, sha256).hexdigest()


def _next_seq() -> int:
    """The new entry's id and seq, from the database, without a shared row.

    PostgreSQL: the id's own sequence (``nextval`` takes no lock that lasts, so concurrent
    appenders never wait on each other; a rolled-back append leaves a gap, and ids can commit
    out of order). SQLite: one more than the highest id ever given, read inside the write
    transaction, which SQLite makes exclusive anyway (``transaction_mode`` IMMEDIATE): ids there
    are contiguous, a rollback takes its id back.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [AuditEntry._meta.db_table]
            )
            return int(cursor.fetchone()[0])
        cursor.execute(f"SELECT max(id) FROM {AuditEntry._meta.db_table}")  # noqa: S608
        highest = int(cursor.fetchone()[0] or 0)
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = %s", [AuditEntry._meta.db_table]
            )
            row = cursor.fetchone()
            highest = max(highest, int(row[0]) if row else 0)
        return highest + 1


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
    entry = AuditEntry(
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
        prev_digest="",
    )
    for attempt in range(3):
        try:
            with transaction.atomic():
                entry.pk = entry.seq = _next_seq()
                entry.digest = sealing.entry_mac(entry)
                entry.save(force_insert=True)
            break
        except IntegrityError:
            # SQLite without IMMEDIATE transactions only: another writer took that id first.
            entry._state.adding = True
            if attempt == 2 or connection.vendor == "postgresql":
                raise
    # Once committed, the sealer may be due (throttled per process: usually nothing to do).
    transaction.on_commit(sealing.after_commit, robust=True)
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
    # Entries in a batch (the legacy chain's included), and those not sealed yet: their MACs are
    # checked, but their deletion shows only once sealed (or as an id gap on SQLite).
    sealed: int = 0
    unsealed: int = 0
    batches: int = 0
    # PostgreSQL only: ids missing between entries (a rolled-back append leaves one, and so
    # would an unsealed entry deleted before its batch): not a problem by itself. The latest
    # 100 of them, and how many in all.
    gaps: list[int] = field(default_factory=list)
    gap_count: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "problems": self.problems,
            "sealed": self.sealed,
            "unsealed": self.unsealed,
            "batches": self.batches,
            "gaps": self.gaps,
            "gap_count": self.gap_count,
        }


@dataclass
class _BatchSeen:
    root: sealing.RootHasher = field(default_factory=sealing.RootHasher)


def verify_chain() -> ChainReport:
    """Check the whole log, reporting every problem by entry or batch:

    * every entry's MAC (an edit, or an entry moved to another seq or id);
    * the legacy chain (batch 0) link by link, and its head;
    * every batch against the entries marked with it (a sealed entry deleted, added or
      unmarked), its hash and MAC (an edited or forged batch), the chain of batches (a batch
      deleted or replaced);
    * the database against the signed checkpoints outside it (a wipe, a truncation, a restored
      older database, a forged checkpoint: see :mod:`carevault.web.audit.anchor`);
    * on SQLite, where ids are contiguous and never reused, a missing id (an unsealed entry
      deleted) and a counter past the last entry (an unsealed tail cut), as heuristics.

    Unsealed entries are counted apart (``unsealed``)."""
    key = keys.keys().chain_secret().expose()
    anchored = anchor.read()
    problems: list[str] = list(anchored.problems)
    batches = {b.number: b for b in AuditBatch.objects.order_by("number")}
    zero = batches.get(0)
    legacy_last = sealing.legacy_end(zero)
    checkpointed = {int(r["seq"]) for r in anchored.records if r.get("kind") == "audit"}
    digests: dict[int, str] = {}
    seen: dict[int, _BatchSeen] = {}
    entry_problems: list[str] = []
    contiguous = connection.vendor == "sqlite"
    gaps: collections.deque[int] = collections.deque(maxlen=100)  # the latest
    gap_count = 0
    prev = GENESIS
    legacy_count = legacy_seen = 0
    expected_seq = 1
    count = unsealed = 0
    new_prev: int | None = None
    for entry in AuditEntry.objects.order_by("seq").iterator(chunk_size=2000):
        count += 1
        if entry.seq <= legacy_last:
            legacy_count += 1
            if entry.seq != expected_seq:
                entry_problems.append(f"entry {expected_seq} is missing (next is {entry.seq})")
            if entry.prev_digest != prev:
                entry_problems.append(f"entry {entry.seq} does not follow the entry before it")
            if not hmac.compare_digest(entry.digest, _digest(entry.prev_digest, entry)):
                entry_problems.append(f"entry {entry.seq} was altered")
            if entry.seq in checkpointed:
                digests[entry.seq] = entry.digest
            prev = entry.digest
            legacy_seen = entry.seq
        else:
            # Between two entries of the batch scheme (where the first one starts is the
            # database's business: a flushed SQLite keeps its highest id).
            if new_prev is not None and entry.seq != new_prev + 1:
                if contiguous:
                    entry_problems.append(f"entry {new_prev + 1} is missing (next is {entry.seq})")
                else:
                    gap_count += entry.seq - new_prev - 1
                    gaps.extend(range(max(new_prev + 1, entry.seq - 100), entry.seq))
            new_prev = entry.seq
            if entry.pk != entry.seq or not hmac.compare_digest(
                entry.digest, sealing.entry_mac(entry, key)
            ):
                entry_problems.append(f"entry {entry.seq} was altered")
        if entry.batch is None:
            unsealed += 1
        elif entry.batch != 0:
            seen.setdefault(entry.batch, _BatchSeen()).root.add(entry.seq, entry.digest)
        expected_seq = entry.seq + 1
    if contiguous and new_prev is not None:
        highest = _highest_id_given()
        if highest > new_prev:
            # A heuristic only: whoever can delete rows can also lower the counter.
            entry_problems.append(
                f"entries {new_prev + 1}-{highest} are missing at the end (SQLite gave those ids "
                "and never gives one twice: the unsealed tail was cut)"
            )
    problems = entry_problems + problems
    # -- the legacy chain: its end against its head and batch 0 ---------------------------------
    head = AuditHead.objects.filter(id=1).first()
    if legacy_last and legacy_seen != legacy_last:
        problems.append(f"the chain ends at {legacy_seen} but its head says {legacy_last}")
    elif legacy_last and prev != (zero.root if zero is not None else head and head.digest):
        problems.append(f"entry {legacy_last} is not the end of the chain its head recorded")
    if (
        zero is not None
        and head is not None
        and (head.seq, head.digest)
        != (
            zero.last_seq,
            zero.root,
        )
    ):
        problems.append(f"the legacy head says {head.seq} but batch 0 sealed {zero.last_seq}")
    # -- the batches ---------------------------------------------------------------------------
    problems += _check_batches(batches, seen, key)
    # -- outside the database ------------------------------------------------------------------
    if checkpointed:  # the legacy chain's own checkpoints
        problems += anchor.check(anchored, legacy_count, legacy_seen, digests)
    outside = _check_anchor(anchored, batches, count)
    # An emptied log: what the checkpoints recorded says it first.
    problems = outside + problems if count == 0 else problems + outside
    sealed = count - unsealed
    return ChainReport(
        not problems, count, problems, sealed, unsealed, len(batches), list(gaps), gap_count
    )


def _highest_id_given() -> int:
    """SQLite: the highest entry id ever given (AUTOINCREMENT's counter; 0 if none)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = %s", [AuditEntry._meta.db_table]
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _check_batches(
    batches: dict[int, AuditBatch], seen: dict[int, _BatchSeen], key: bytes
) -> list[str]:
    problems: list[str] = []
    prev_hash = GENESIS
    total = 0
    for number, batch in sorted(batches.items()):
        if number != 0 and number - 1 not in batches:
            problems.append(f"batch {number - 1} is missing (next is {number})")
        digest = sealing.batch_hash(batch)
        if digest != batch.hash or not hmac.compare_digest(
            batch.mac, sealing.batch_mac(batch.hash, key)
        ):
            problems.append(f"batch {number} was altered (its hash or MAC does not verify)")
        if batch.prev_hash != prev_hash:
            problems.append(f"batch {number} does not follow the batch before it")
        total += batch.count
        if batch.total != total:
            problems.append(f"batch {number} counts {batch.total} sealed entries, not {total}")
        prev_hash = batch.hash
        if number == 0:
            continue
        got = seen.get(number, _BatchSeen()).root
        if (got.count, got.hexdigest()) != (batch.count, batch.root) or (
            got.count
            and (
                got.first,
                got.last,
            )
            != (batch.first_seq, batch.last_seq)
        ):
            problems.append(
                f"batch {number} sealed {batch.count} entries ({batch.first_seq}-"
                f"{batch.last_seq}) but {got.count} match it (entries deleted, added or edited)"
            )
    if 0 not in batches and batches:
        problems.append("batch 0 is missing")
    for number in sorted(set(seen) - set(batches)):
        problems.append(f"entries are marked with batch {number}, which does not exist")
    return problems


def _check_anchor(anchored: AnchorState, batches: dict[int, AuditBatch], count: int) -> list[str]:
    """The batches against their signed records outside the database."""
    problems: list[str] = []
    latest = anchor.latest_batch(anchored)
    if latest is None:
        return problems
    number, at = int(latest["batch"]), latest["at"]
    if count == 0 and int(latest.get("count", 0)) > 0:
        problems.append(
            f"the audit log is empty but a signed checkpoint of {at} recorded "
            f"{latest['count']} entries (wiped)"
        )
    highest = max(batches, default=-1)
    if highest < number:
        problems.append(
            f"the log's last batch is {highest} but a signed checkpoint of {at} recorded batch "
            f"{number} with {latest.get('count')} entries up to entry {latest.get('seq')} "
            "(truncated, wiped, or an older database restored)"
        )
    for record in anchor.batch_records(anchored):
        batch = batches.get(int(record["batch"]))
        if batch is not None and batch.hash != record["hash"]:
            problems.append(
                f"batch {batch.number} is not the one a signed checkpoint of {record['at']} "
                "recorded (rewritten)"
            )
    return problems
