"""The baseline scorer's :class:`~carevault.security.baseline.History`, read from the stored
security events: shared by every app server (one database), and rolled back with the test or
the transaction that wrote it. Each query is one indexed COUNT (kind, actor or address, time)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from django.db.models import QuerySet

from carevault.security.events import Event, EventKind

from .models import SecurityEvent


def _when(since: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(since, tz=dt.UTC)


def _events(kinds: Collection[EventKind], since: float) -> QuerySet[SecurityEvent]:
    values = [k.value for k in kinds]
    qs = SecurityEvent.objects.filter(at__gte=_when(since))
    return qs.filter(kind=values[0]) if len(values) == 1 else qs.filter(kind__in=values)


class DbHistory:
    def count(
        self,
        kinds: Collection[EventKind],
        since: float,
        *,
        actor: str | None = None,
        address: str | None = None,
        outcome: str | None = None,
    ) -> int:
        qs = _events(kinds, since)
        if actor is not None:
            qs = qs.filter(actor=actor)
        if address is not None:
            qs = qs.filter(address=address)
        if outcome is not None:
            qs = qs.filter(outcome=outcome)
        return qs.count()

    def distinct_actors(
        self, kinds: Collection[EventKind], since: float, *, address: str, outcome: str | None
    ) -> int:
        qs = _events(kinds, since).filter(address=address).exclude(actor="")
        if outcome is not None:
            qs = qs.filter(outcome=outcome)
        return qs.values("actor").distinct().count()

    def distinct_patients(self, since: float, *, actor: str) -> set[str]:
        qs = _events({EventKind.PHI_READ}, since).filter(actor=actor).exclude(patient="")
        return set(qs.values_list("patient", flat=True).distinct())

    def session_clients(self, session: str, since: float) -> set[tuple[str, str]]:
        qs = SecurityEvent.objects.filter(session=session, at__gte=_when(since))
        return set(qs.values_list("address", "client").distinct())

    def add(self, event: Event) -> None:
        """Nothing: the engine stores every event (with its score) right after scoring it."""
