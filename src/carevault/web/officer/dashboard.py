"""What the security officer's dashboard shows: the audit log and its recent counts, key status,
login protection (suspended accounts, blocked addresses), and the security layer (the risk
timeline, active incidents, responses in force, the encryption floor, detector health and key
versions). Reads only, for the officer's pages; the writes are the apps' ``do_*`` actions.
Identifiers and numbers only; nothing here decrypts PHI (a patient's key version is read from
the wrapped keyring's metadata after unwrapping it with the master key, never any data)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Avg, Count, Max, Q, QuerySet
from django.db.models.functions import TruncMinute
from django.utils import timezone

from carevault import config
from carevault.crypto import KeyProviderError, MasterKey
from carevault.security.response import ActionKind, Level
from carevault.web.accounts.models import User
from carevault.web.audit.log import Outcome
from carevault.web.audit.models import AuditEntry
from carevault.web.login import throttle
from carevault.web.securitycore import scorer
from carevault.web.securitycore import state as security_state
from carevault.web.securitycore.models import (
    ACTIVE_STATUSES,
    Incident,
    ResponseRecord,
    ResponseStatus,
    SecurityEvent,
)
from carevault.web.securitycore.runtime import response_config, runtime, thresholds
from carevault.web.securitycore.scoring import score_pending
from carevault.web.vault import service
from carevault.web.vault.models import ClinicianKey, PatientKey

INCIDENTS_SHOWN = 50
TIMELINE_MINUTES = 60
MAX_TIMELINE_MINUTES = 24 * 60
KEY_VERSIONS_SHOWN = 20
RECENT = dt.timedelta(hours=24)
SUSPENDED_SHOWN = 200


# -- the audit log, keys, login protection ---------------------------------------------------------


def audit_entries(*, action: str = "", outcome: str = "", actor: str = "") -> QuerySet[AuditEntry]:
    """The audit log, newest first: actions starting with ``action``, one outcome, one actor."""
    entries: QuerySet[AuditEntry] = AuditEntry.objects.order_by("-seq")
    if action:
        entries = entries.filter(action__startswith=action.strip())
    if outcome:
        entries = entries.filter(outcome=outcome)
    if actor:
        entries = entries.filter(actor__iexact=actor.strip())
    return entries


def recent_counts(now: dt.datetime) -> dict[str, int]:
    """Denials, failed logins and alerts in the last RECENT."""
    counts = AuditEntry.objects.filter(at__gte=now - RECENT).aggregate(
        denials=Count("pk", filter=Q(action="access.denied")),
        login_failures=Count("pk", filter=Q(action="auth.login_failed")),
        alerts=Count("pk", filter=Q(outcome=Outcome.ALERT)),
    )
    return {key: int(value or 0) for key, value in counts.items()}


def key_status() -> dict[str, Any]:
    try:
        provider = config.master_key_provider().description
    except KeyProviderError as exc:
        # The page still loads (and says why) when the master key cannot be reached.
        provider = f"not configured ({exc})"
    return {
        "patient_keys": PatientKey.objects.count(),
        "signing_keys": ClinicianKey.objects.filter(active=True).count(),
        "provider": provider,
    }


def suspensions() -> dict[str, Any]:
    """The most recently suspended accounts (at most SUSPENDED_SHOWN), how many in all, and the
    limits that suspend them."""
    suspended = throttle.suspended_users()
    return {
        "suspended": list(suspended[:SUSPENDED_SHOWN]),
        "suspended_total": suspended.count(),
        "limits": throttle.describe(),
    }


def blocks() -> dict[str, Any]:
    return {"blocked": throttle.blocked_addresses(), "limits": throttle.describe()}


# -- the security layer ----------------------------------------------------------------------------


def active_incidents(limit: int = INCIDENTS_SHOWN) -> list[Incident]:
    return list(
        Incident.objects.filter(status__in=ACTIVE_STATUSES)
        .select_related("acknowledged_by")
        .prefetch_related("subjects", "responses")
        .order_by("-level", "-updated_at")[:limit]
    )


def _still_holds(response: ResponseRecord, now: dt.datetime) -> bool:
    kind = ActionKind(response.action)
    if response.until is not None and response.until <= now:
        return False
    if kind is ActionKind.THROTTLE_ADDRESS:
        return throttle.is_blocked(response.target)
    if kind is ActionKind.SUSPEND_ACCOUNT:
        return User.objects.filter(username=response.target, suspended_at__isnull=False).exists()
    if kind is ActionKind.RAISE_FLOOR:
        return security_state.current_floor(now) is not None
    return True


def responses_in_force() -> list[ResponseRecord]:
    """Reversible responses still holding. One that ended elsewhere (the block expired, the
    owner unlocked their account with the second factor, the floor ran out) is marked ended."""
    now = timezone.now()
    holding: list[ResponseRecord] = []
    ended: list[ResponseRecord] = []
    for response in ResponseRecord.objects.filter(status=ResponseStatus.IN_FORCE).select_related(
        "incident"
    ):
        (holding if _still_holds(response, now) else ended).append(response)
    if ended:
        ResponseRecord.objects.filter(pk__in=[r.pk for r in ended]).update(
            status=ResponseStatus.ENDED
        )
    return holding


def recent_responses(limit: int = 20) -> list[ResponseRecord]:
    return list(ResponseRecord.objects.select_related("incident", "lifted_by")[:limit])


def timeline(minutes: int = TIMELINE_MINUTES, now: dt.datetime | None = None) -> dict[str, Any]:
    """Per minute: the highest and mean risk and how many events (JSON for the chart). Events
    left unscored (batch mode, see securitycore.scoring) are scored first, so the chart shows
    them."""
    score_pending()
    minutes = max(5, min(int(minutes), MAX_TIMELINE_MINUTES))
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    start = now - dt.timedelta(minutes=minutes - 1)
    rows = (
        SecurityEvent.objects.filter(at__gte=start, risk__isnull=False)
        .annotate(minute=TruncMinute("at"))
        .values("minute")
        .annotate(highest=Max("risk"), mean=Avg("risk"), events=Count("pk"))
        .order_by("minute")
    )
    by_minute = {row["minute"].replace(second=0, microsecond=0): row for row in rows}
    points = []
    for n in range(minutes):
        minute = start + dt.timedelta(minutes=n)
        row = by_minute.get(minute)
        points.append(
            {
                "t": minute.isoformat(),
                "max": round(float(row["highest"]), 4) if row else 0.0,
                "mean": round(float(row["mean"]), 4) if row else 0.0,
                "events": int(row["events"]) if row else 0,
            }
        )
    limits = thresholds()
    return {
        "minutes": minutes,
        "points": points,
        "thresholds": {level.label: limits.for_level(level) for level in list(Level)[1:]},
        "open_incidents": Incident.objects.filter(status__in=ACTIVE_STATUSES).count(),
        "pending": SecurityEvent.objects.filter(risk__isnull=True).count(),
        "scoring": scorer.health(),
    }


def detector_health() -> dict[str, Any]:
    rt = runtime()
    since = timezone.now() - dt.timedelta(hours=24)
    stored = SecurityEvent.objects.filter(at__gte=since).aggregate(
        events=Count("pk"), highest=Max("risk")
    )
    host = rt.last_host.as_dict() if rt.last_host is not None else None
    return {
        **rt.health(),
        "events_24h": int(stored["events"] or 0),
        "highest_24h": float(stored["highest"] or 0.0),
        "pending": SecurityEvent.objects.filter(risk__isnull=True).count(),
        "scoring": scorer.health(),
        "host": host,
        "thresholds": thresholds().as_tuple(),
    }


@dataclass(frozen=True)
class PatientKeyVersion:
    patient_id: str
    version: int
    suite: str
    versions: int


def key_versions() -> dict[str, Any]:
    """Master versions, how many patient keys, which were rotated by a response and where each
    of those stands now (their primary version; at most KEY_VERSIONS_SHOWN unwrapped)."""
    master = service.master()
    if isinstance(master, MasterKey):
        infos = master.keyring.versions()
        master_info = {
            "description": master.description,
            "versions": len(infos),
            "primary": master.keyring.primary.version,
        }
    else:
        master_info = {"description": master.description, "versions": None, "primary": None}
    since = timezone.now() - dt.timedelta(hours=24)
    rotated = ResponseRecord.objects.filter(
        action=ActionKind.ROTATE_KEYS.value, status=ResponseStatus.DONE
    )
    recent = list(
        rotated.filter(at__gte=since)
        .order_by("-at")
        .values_list("target", flat=True)
        .distinct()[:KEY_VERSIONS_SHOWN]
    )
    patients = []
    for patient_id in dict.fromkeys(recent):
        try:
            ring = service.patient_keyring(patient_id)
        except PatientKey.DoesNotExist:
            continue
        patients.append(
            PatientKeyVersion(
                patient_id, ring.primary.version, ring.primary.suite.label, len(ring.versions())
            )
        )
    return {
        "master": master_info,
        "patient_keys": PatientKey.objects.count(),
        "rotated_24h": rotated.filter(at__gte=since).count(),
        "rotated_patients": patients,
    }


def floor_context() -> dict[str, Any]:
    return {
        "floor": security_state.current_floor(),
        "floor_suite": response_config().floor_suite,
    }
