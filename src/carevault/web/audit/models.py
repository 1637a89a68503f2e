"""The tamper-evident audit log: append-only, HMAC-chained.

Each entry's ``digest`` is HMAC-SHA256, under a server secret wrapped by the master key, of the
previous entry's digest and the canonical encoding of this entry. Editing, deleting or
re-ordering any entry breaks the chain from that point, and without the master key nobody can
recompute it. Entries hold identifiers and action codes, never PHI.
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
    prev_digest = models.CharField(max_length=64)
    digest = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["patient_id", "seq"]),
            models.Index(fields=["action", "seq"]),
        ]

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise ValueError("audit entries are append-only")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValueError("audit entries are append-only")


class AuditHead(models.Model):
    """One row: the last sequence number and digest. Locking it serialises appends."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    digest = models.CharField(max_length=64, default="0" * 64)
