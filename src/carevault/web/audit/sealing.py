"""Sealing the audit log: unsealed entries chained in batches into signed checkpoints.

Appending (:func:`carevault.web.audit.log.record`) writes one row with its own MAC and takes no
shared row. The sealer, here, makes deletions visible: it takes the entries not yet in a batch,
in seq order, and commits in one transaction an :class:`AuditBatch` (the hash of their
``(seq, MAC)`` list, their count and seq range, the previous batch's hash, all under a MAC)
together with every entry's batch mark. After the commit it anchors the batch outside the
database (:mod:`carevault.web.audit.anchor`), and every run first anchors whatever an earlier,
killed run committed but did not anchor. Two sealers at once: the second finds the sealers' lock
row taken and seals nothing (PostgreSQL, ``SKIP LOCKED``); on SQLite the write transaction is
already exclusive, and the second sees the first one's marks.

When it runs: after any commit that appended, if this process has not looked for a while (a
per-process throttle) and more than :func:`seal_every` entries are unsealed or the oldest is
older than :func:`seal_after` seconds, as a task on the queue (:mod:`carevault.web.jobs`, which
registers itself with :func:`set_sealer`; without it, in the process that looked); from
``carevault audit seal`` and ``audit checkpoint``; and first thing in ``carevault audit verify``.

Batch 0 is the legacy chain (entries written before batches, with ``prev_digest``): its root is
that chain's head digest, taken from :class:`AuditHead`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from carevault.crypto import canonical_bytes
from carevault.modelstore.anchor import AnchorState

from . import anchor, keys
from .models import AuditBatch, AuditEntry, AuditHead, AuditSealer

GENESIS = "0" * 64
ENTRY_PURPOSE = b"carevault-audit-entry/2\x00"
BATCH_PURPOSE = b"carevault-audit-batch/1\x00"
ROOT_PURPOSE = b"carevault-audit-root/1\x00"
# Entries per batch at most (a long backlog is sealed in several batches, each its own commit).
MAX_BATCH = 5000
_MARK_CHUNK = 500

logger = logging.getLogger(__name__)


def seal_every() -> int:
    """N: seal once more than this many entries are unsealed."""
    return int(getattr(settings, "AUDIT_SEAL_EVERY", 100))


def seal_after() -> float:
    """T: seal once the oldest unsealed entry is older than this (seconds)."""
    return float(getattr(settings, "AUDIT_SEAL_AFTER_SECONDS", 60))


def check_every() -> float:
    """How often (seconds) one process looks at the unsealed backlog after a commit."""
    return float(getattr(settings, "AUDIT_SEAL_CHECK_SECONDS", 5))


# -- MACs and hashes -------------------------------------------------------------------------------


def entry_fields(entry: AuditEntry) -> dict[str, Any]:
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


def _key() -> bytes:
    return keys.keys().chain_secret().expose()


def entry_mac(entry: AuditEntry, key: bytes | None = None) -> str:
    """The MAC of an entry written by the batch scheme: every field, its id and seq included
    (an entry moved to another place no longer verifies)."""
    fields = {**entry_fields(entry), "id": entry.pk, "prev_digest": entry.prev_digest}
    message = ENTRY_PURPOSE + canonical_bytes(fields)
    return hmac.new(_key() if key is None else key, message, sha256).hexdigest()


class RootHasher:
    """The root of a batch: a hash over its entries' ``(seq, MAC)`` list in seq order."""

    def __init__(self) -> None:
        self._hash = sha256(ROOT_PURPOSE)
        self.count = 0
        self.first = 0
        self.last = 0

    def add(self, seq: int, mac: str) -> None:
        if not self.count:
            self.first = seq
        self.count += 1
        self.last = seq
        self._hash.update(f"{seq}:{mac}\n".encode())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def batch_fields(batch: AuditBatch) -> dict[str, Any]:
    return {
        "number": batch.number,
        "first_seq": batch.first_seq,
        "last_seq": batch.last_seq,
        "count": batch.count,
        "total": batch.total,
        "high_seq": batch.high_seq,
        "root": batch.root,
        "prev_hash": batch.prev_hash,
        "sealed_at": batch.sealed_at.isoformat(),
    }


def batch_hash(batch: AuditBatch) -> str:
    return sha256(BATCH_PURPOSE + canonical_bytes(batch_fields(batch))).hexdigest()


def batch_mac(digest: str, key: bytes | None = None) -> str:
    return hmac.new(
        _key() if key is None else key, BATCH_PURPOSE + digest.encode(), sha256
    ).hexdigest()


# -- sealing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealResult:
    batches: list[int]  # the numbers of the batches this run committed
    entries: int  # the entries they sealed
    anchored: list[int]  # the batches this run anchored outside the database (earlier ones too)
    skipped: bool = False  # another sealer held the lock
    refused: str = ""  # why nothing was sealed: the checkpoints contradict the database

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "entries": self.entries,
            "anchored": self.anchored,
            "skipped": self.skipped,
            "refused": self.refused,
        }


def refusal(state: AnchorState) -> str:
    """Why the sealer must not seal or anchor (empty: it may): the checkpoint file was tampered
    with, or the database holds fewer or other batches than it recorded."""
    if state.problems:
        return state.problems[0]
    latest = anchor.latest_batch(state)
    if latest is None:
        return ""
    number = int(latest["batch"])
    batch = AuditBatch.objects.filter(number=number).first()
    if batch is None:
        return f"the checkpoint file records batch {number}, which the database lacks"
    if batch.hash != latest["hash"]:
        return f"batch {number} is not the one the checkpoint file records"
    return ""


def seal(*, max_batches: int | None = None) -> SealResult:
    """Seal every unsealed entry (in batches of at most :data:`MAX_BATCH`), then anchor every
    batch not yet anchored. Safe to kill at any instant and to run in two processes at once."""
    refused = refusal(anchor.read())
    if refused:
        # Sealing now would write over the evidence (a new batch 0 after a wipe, a fresh
        # checkpoint file after one was deleted): leave it for ``audit verify`` to report.
        logger.error("the audit log is not sealed: %s", refused)
        return SealResult([], 0, [], refused=refused)
    anchored = anchor_missing()
    made: list[int] = []
    sealed = 0
    skipped = False
    while max_batches is None or len(made) < max_batches:
        outcome = _seal_one()
        if outcome is None:
            skipped = True
            break
        number, count = outcome
        if not count:
            if number is not None:  # batch 0 (the legacy chain, maybe empty)
                made.append(number)
                continue
            break
        made.append(number)  # type: ignore[arg-type]
        sealed += count
    if made:
        anchored += anchor_missing()
    return SealResult(made, sealed, anchored, skipped)


def _lock() -> bool:
    """Take the sealers' lock row inside the current transaction; False when another sealer
    holds it (PostgreSQL). On SQLite the write transaction (IMMEDIATE) is the lock."""
    AuditSealer.objects.get_or_create(id=1)
    # A plain SELECT ... FOR UPDATE (exists() may drop the lock clause).
    locking = AuditSealer.objects.select_for_update(skip_locked=connection.vendor == "postgresql")
    return bool(list(locking.filter(id=1).values_list("id", flat=True)))


def _seal_one() -> tuple[int | None, int] | None:
    """Commit one batch: (its number, entries sealed); (None, 0): nothing to seal; None: another
    sealer holds the lock."""
    key = _key()
    with transaction.atomic():
        if not _lock():
            return None
        last = AuditBatch.objects.order_by("-number").first()
        if last is None:
            return (_seal_legacy(key), 0)
        rows = list(
            AuditEntry.objects.filter(batch__isnull=True, seq__gt=legacy_end())
            .order_by("seq")
            .values_list("pk", "seq", "digest")[:MAX_BATCH]
        )
        if not rows:
            return (None, 0)
        root = RootHasher()
        for _, seq, mac in rows:
            root.add(seq, mac)
        batch = AuditBatch(
            number=last.number + 1,
            first_seq=root.first,
            last_seq=root.last,
            count=root.count,
            total=last.total + root.count,
            high_seq=max(last.high_seq, root.last),
            root=root.hexdigest(),
            prev_hash=last.hash,
            sealed_at=timezone.now().replace(microsecond=0),
        )
        batch.hash = batch_hash(batch)
        batch.mac = batch_mac(batch.hash, key)
        batch.save(force_insert=True)
        ids = [pk for pk, _, _ in rows]
        marked = 0
        for start in range(0, len(ids), _MARK_CHUNK):
            chunk = ids[start : start + _MARK_CHUNK]
            marked += AuditEntry.objects.filter(pk__in=chunk, batch__isnull=True).update(
                batch=batch.number
            )
        if marked != len(ids):
            # Only a sealer that ignored the lock could get here: roll the batch back.
            raise RuntimeError(f"batch {batch.number}: {len(ids) - marked} entries sealed already")
    return (batch.number, batch.count)


def legacy_end(batch_zero: AuditBatch | None = None) -> int:
    """The last seq of the legacy chain (0: none)."""
    if batch_zero is None:
        batch_zero = AuditBatch.objects.filter(number=0).first()
    if batch_zero is not None:
        return int(batch_zero.last_seq)
    head = AuditHead.objects.filter(id=1).first()
    return int(head.seq) if head is not None else 0


def _seal_legacy(key: bytes) -> int:
    """Batch 0: the legacy chain as it stands (its head's seq and digest, its entry count)."""
    head = AuditHead.objects.filter(id=1).first()
    end, digest = (int(head.seq), head.digest) if head is not None else (0, GENESIS)
    count = AuditEntry.objects.filter(seq__lte=end).count() if end else 0
    batch = AuditBatch(
        number=0,
        first_seq=1 if end else 0,
        last_seq=end,
        count=count,
        total=count,
        high_seq=end,
        root=digest,
        prev_hash=GENESIS,
        sealed_at=timezone.now().replace(microsecond=0),
    )
    batch.hash = batch_hash(batch)
    batch.mac = batch_mac(batch.hash, key)
    batch.save(force_insert=True)
    if end:
        AuditEntry.objects.filter(seq__lte=end, batch__isnull=True).update(batch=0)
    return 0


# -- the anchor outside the database ---------------------------------------------------------------


def anchor_missing() -> list[int]:
    """Anchor every committed batch the checkpoint file does not hold yet (a sealer killed after
    its commit left it so); the numbers anchored."""
    done = {int(r["batch"]) for r in anchor.batch_records(anchor.read())}
    written = []
    for batch in AuditBatch.objects.exclude(number__in=done).order_by("number"):
        anchor.append_batch(
            {
                "batch": batch.number,
                "hash": batch.hash,
                "seq": batch.high_seq,
                "count": batch.total,
            }
        )
        written.append(batch.number)
    return written


# -- when to seal ----------------------------------------------------------------------------------

_last_look = float("-inf")  # never looked yet


def after_commit() -> None:
    """Registered by every append (``on_commit``): at most once per :func:`check_every` seconds
    per process, look at the unsealed backlog (two indexed queries) and seal when it is due.
    A failure is logged, never raised into the audited action."""
    global _last_look
    now = time.monotonic()
    if now - _last_look < check_every():
        return
    _last_look = now
    try:
        if due():
            (_sealer or seal)()
    except Exception:
        logger.exception("could not seal the audit log")


# What runs the sealer once it is due: the task queue (carevault.web.jobs registers a function
# that enqueues one sealing task, so the sealing transaction never runs inside a request); None:
# seal in this process, at once.
_sealer: Callable[[], object] | None = None


def set_sealer(sealer: Callable[[], object] | None) -> None:
    global _sealer
    _sealer = sealer


def due() -> bool:
    """More than N entries unsealed, or the oldest older than T seconds."""
    unsealed = AuditEntry.objects.filter(batch__isnull=True)
    if unsealed.values("pk")[: seal_every() + 1].count() > seal_every():
        return True
    oldest = unsealed.order_by("seq").values_list("at", flat=True).first()
    return oldest is not None and timezone.now() - oldest >= dt.timedelta(seconds=seal_after())


def unsealed_count() -> int:
    return AuditEntry.objects.filter(batch__isnull=True).count()
