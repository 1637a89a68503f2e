"""The tamper-evident audit log: append-only entries, each with its own MAC, sealed in batches.

Each entry's ``digest`` is HMAC-SHA256, under a server secret wrapped by the master key, of the
canonical encoding of every field of the entry, its database-assigned ``seq`` (= its id)
included. Appending takes no shared row: the database orders the entries (an auto-increment id,
or the id's sequence on PostgreSQL). A sealer (:mod:`carevault.web.audit.seal`) later chains the
entries it finds unsealed into :class:`AuditBatch` rows, a hash chain of batches anchored
outside the database. Entries hold identifiers and action codes, never PHI.

Entries written before batches existed (``prev_digest`` set) form the *legacy* range: an HMAC
chain whose head is :class:`AuditHead`, sealed as a whole in batch 0.
"""

from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    seq = models.BigIntegerField(unique=True)
    at = models.DateTimeField()
    actor_id = models.BigIntegerField(null=True)
    actor = models.CharField(max_length=150, blank=True)
    role = models.CharField(max_length=16, blank=True)
    action = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    patient_id = models.CharField(max_length=64, blank=True)
    address = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict)
    # Legacy entries only: the digest of the entry before (new entries: empty).
    prev_digest = models.CharField(max_length=64)
    # The entry's MAC (legacy entries: its chain digest).
    digest = models.CharField(max_length=64)
    # The batch that sealed the entry (None: not sealed yet). Set once, by the sealer only; not
    # under the entry's MAC (it comes later) but under the batch's root.
    batch = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["patient_id", "seq"]),
            models.Index(fields=["action", "seq"]),
            models.Index(fields=["batch", "seq"]),
        ]

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise ValueError("audit entries are append-only")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValueError("audit entries are append-only")


class AuditHead(models.Model):
    """One row: the last sequence number and digest of the legacy chain (entries written before
    batches existed). Nothing appends through it any more."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    digest = models.CharField(max_length=64, default="0" * 64)


class AuditBatch(models.Model):
    """A signed checkpoint: the entries marked with its ``number``, hashed in seq order into
    ``root``, chained to the batch before by ``prev_hash``; ``hash`` covers every field, and
    ``mac`` (HMAC under the audit key) authenticates the hash. Batch 0 is the legacy chain
    (``root``: its head digest). Anchored outside the database by its number and hash."""

    number = models.BigIntegerField(primary_key=True)
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    count = models.BigIntegerField()
    # Entries sealed by this batch and every batch before it.
    total = models.BigIntegerField()
    # The highest seq sealed by this batch or any before (batches can overlap in seq).
    high_seq = models.BigIntegerField()
    root = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField()
    hash = models.CharField(max_length=64)
    mac = models.CharField(max_length=64)

    class Meta:
        ordering = ["number"]


class AuditSealer(models.Model):
    """One row that only sealers lock: two sealers never seal the same entries (the second
    skips while the first holds it). Appenders never touch it."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
