"""The system-wide security state: the encryption floor the security layer raised.

The adaptive policy (issue 6) asks :func:`current_floor` which suite nothing may be encrypted
below right now; None means no raised floor (the policy's own minimum applies). The floor lives
in the database (``SecurityState``), so every app server and worker sees the same one, and it
ends by itself at ``until``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from carevault.crypto import Suite

from .models import Incident, SecurityState


@dataclass(frozen=True)
class Floor:
    suite: str  # a Suite label, e.g. "AES-256-GCM"
    until: dt.datetime
    reason: str
    raised_at: dt.datetime | None
    incident_id: int | None

    @property
    def level(self) -> int:
        return Suite.parse(self.suite).level


def current_floor(now: dt.datetime | None = None) -> Floor | None:
    """The raised floor in force, or None."""
    now = now or timezone.now()
    row = SecurityState.objects.filter(id=1).first()
    if row is None or not row.floor_suite or row.floor_until is None or row.floor_until <= now:
        return None
    return Floor(
        row.floor_suite,
        row.floor_until,
        row.floor_reason,
        row.floor_raised_at,
        row.floor_incident_id,
    )


@transaction.atomic
def raise_floor(
    suite: str, *, seconds: int, reason: str, incident: Incident | None = None
) -> Floor:
    """Raise the floor to ``suite`` for ``seconds``. A floor already in force is never lowered
    by this: the stronger suite and the later end win."""
    now = timezone.now()
    wanted = Suite.parse(suite)
    until = now + dt.timedelta(seconds=seconds)
    row, _ = SecurityState.objects.select_for_update().get_or_create(id=1)
    current = current_floor(now)
    if current is not None:
        if Suite.parse(current.suite).level > wanted.level:
            wanted = Suite.parse(current.suite)
        until = max(until, current.until)
    row.floor_suite = wanted.label
    row.floor_until = until
    row.floor_reason = reason[:300]
    row.floor_raised_at = now
    row.floor_incident = incident
    row.save()
    return Floor(row.floor_suite, until, row.floor_reason, now, incident.pk if incident else None)


@transaction.atomic
def lower_floor() -> Floor | None:
    """End the raised floor now; returns the floor that was in force (None: there was none)."""
    current = current_floor()
    SecurityState.objects.filter(id=1).update(
        floor_suite="", floor_until=None, floor_reason="", floor_incident=None
    )
    return current
