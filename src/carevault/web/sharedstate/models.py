"""The table behind :class:`~.backend.SharedStateCache` when there is no Redis."""

from __future__ import annotations

from django.db import models


class SharedStateEntry(models.Model):
    """One cache entry: ``value`` is JSON (never pickle: whoever can write this table must not
    be able to run code in the app), ``expires_at`` seconds since the epoch (None: no expiry)."""

    key = models.CharField(max_length=250, primary_key=True)
    value = models.TextField()
    expires_at = models.FloatField(null=True, blank=True, db_index=True)

    class Meta:
        db_table = "sharedstate_entry"

    def __str__(self) -> str:
        return self.key
