"""Incidents: what an event is about, and the incident it joins.

An event whose risk reaches the incident threshold (the step-up threshold unless configured)
joins the active incident that shares one of its subjects (its address, its account, the patient
whose stored data failed, the host), or opens one. An incident stays active until an officer
closes it or ``SECURITY_INCIDENT_IDLE_MINUTES`` pass without a new event.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from carevault.security.assessment import Assessment
from carevault.security.events import Event, EventKind
from carevault.security.response import (
    ActionKind,
    Level,
    ResponseState,
    Subjects,
    explain,
    is_at_rest,
)
from carevault.web.accounts.models import User
from carevault.web.login import throttle

from . import state as security_state
from .models import (
    ACTIVE_STATUSES,
    Incident,
    IncidentStatus,
    IncidentSubject,
    ResponseStatus,
    SecurityEvent,
)


def subject_keys(event: Event) -> list[str]:
    if event.kind is EventKind.HOST:
        return ["host"]
    if is_at_rest(event):
        return [f"patient:{p}" for p in event.patients] or ["stored-data"]
    keys = []
    if event.address:
        keys.append(f"address:{event.address}")
    if event.actor and not event.actor.startswith("?"):
        keys.append(f"account:{event.actor}")
    return keys or ["unattributed"]


TITLES = {
    EventKind.LOGIN_FAILURE: "Failed logins",
    EventKind.LOGIN_SUCCESS: "Suspicious login",
    EventKind.PACKET_REJECTED: "Rejected login packets",
    EventKind.ACCESS_DENIED: "Access denials",
    EventKind.PHI_READ: "Unusual record reads",
    EventKind.PHI_WRITE: "Unusual record writes",
    EventKind.UPLOAD: "Suspicious upload",
    EventKind.SIGNATURE_FAILURE: "Stored record fails its signature",
    EventKind.DECRYPTION_FAILURE: "Stored data fails its integrity check",
    EventKind.PREDICTION: "Unusual prediction queries",
    EventKind.KEY_OPERATION: "Unusual key operation",
    EventKind.HOST: "Host load",
}


def _title(event: Event, keys: list[str]) -> str:
    about = ", ".join(k.replace(":", " ", 1) for k in keys[:2])
    return f"{TITLES.get(event.kind, event.kind.value)}: {about}"[:200]


def attach(row: SecurityEvent, event: Event, assessment: Assessment, level: Level) -> Incident:
    """Join the event to the active incident that shares one of its subjects, or open one."""
    keys = subject_keys(event)
    now = timezone.now()
    idle = dt.timedelta(minutes=int(settings.SECURITY_INCIDENT_IDLE_MINUTES))
    explanation = f"event #{row.pk}: {explain(assessment, event, level)}"
    found = (
        Incident.objects.filter(
            status__in=ACTIVE_STATUSES, updated_at__gte=now - idle, subjects__key__in=keys
        )
        .order_by("-updated_at")
        .values_list("pk", flat=True)
        .first()
    )
    if found is None:
        incident = Incident.objects.create(
            opened_at=now,
            updated_at=now,
            title=_title(event, keys),
            level=int(level),
            risk=assessment.risk,
            explanation=explanation,
            detectors=dict(assessment.detectors),
            features=dict(assessment.features),
            rules=list(assessment.rules),
            event_count=1,
        )
    else:
        incident = Incident.objects.select_for_update().get(pk=found)
        incident.event_count += 1
        incident.updated_at = now
        if int(level) > incident.level:
            incident.level = int(level)
            if incident.status == IncidentStatus.ACKNOWLEDGED:
                # Worse than what the officer acknowledged: it needs their eyes again.
                incident.status = IncidentStatus.OPEN
        if assessment.risk >= incident.risk:
            incident.risk = assessment.risk
            incident.explanation = explanation
            incident.features = dict(assessment.features)
        detectors = dict(incident.detectors)
        for name, value in assessment.detectors.items():
            detectors[name] = max(float(value), float(detectors.get(name, 0.0)))
        incident.detectors = detectors
        incident.rules = sorted(set(incident.rules) | set(assessment.rules))
        incident.save()
    have = set(incident.subjects.values_list("key", flat=True))
    IncidentSubject.objects.bulk_create(
        [IncidentSubject(incident=incident, key=k[:200]) for k in keys if k[:200] not in have]
    )
    row.incident = incident
    row.save(update_fields=["incident"])
    return incident


def done_targets(incident: Incident, action: ActionKind) -> frozenset[str]:
    return frozenset(
        incident.responses.filter(
            action=action.value, status__in=[ResponseStatus.DONE, ResponseStatus.IN_FORCE]
        ).values_list("target", flat=True)
    )


def subjects_of_incident(incident: Incident) -> Subjects:
    """Everyone and everything an incident is about (for an officer's escalation)."""
    keys = list(incident.subjects.values_list("key", flat=True))
    addresses = tuple(sorted(k.split(":", 1)[1] for k in keys if k.startswith("address:")))
    names = [k.split(":", 1)[1] for k in keys if k.startswith("account:")]
    accounts = tuple(
        sorted(User.objects.filter(username__in=names).values_list("username", flat=True))
    )
    patients: set[str] = {k.split(":", 1)[1] for k in keys if k.startswith("patient:")}
    for listed in incident.events.values_list("patients", flat=True)[:1000]:
        patients.update(str(p) for p in listed or ())
    return Subjects(addresses=addresses, accounts=accounts, patients=tuple(sorted(patients)))


def state_of_incident(incident: Incident, subjects: Subjects) -> ResponseState:
    return ResponseState(
        known_accounts=frozenset(subjects.accounts),
        blocked_addresses=frozenset(a for a in subjects.addresses if throttle.is_blocked(a)),
        suspended_accounts=frozenset(
            User.objects.filter(
                username__in=subjects.accounts, suspended_at__isnull=False
            ).values_list("username", flat=True)
        ),
        revoked_accounts=done_targets(incident, ActionKind.REVOKE_SESSIONS),
        rotated_patients=done_targets(incident, ActionKind.ROTATE_KEYS),
        floor_raised=security_state.current_floor() is not None,
    )
