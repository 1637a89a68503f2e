"""Responses: the evidence behind an event, what is already in force, and the graduated
response carried out and kept.

:class:`~carevault.security.response.ResponsePolicy` plans, with what is already in force looked
up here (:func:`state_for`) and the evidence behind the event (:func:`findings_for`: what the
event carries, plus the counts the login throttle keeps, the account's run of failures, the
extraction guard's cut-offs), and :class:`~.sink.WebResponseSink` carries out. The evidence caps
the plan (issue 12): failed sign-ins never block an address, raise the floor or rotate keys; an
incident is rated no higher than its evidence permits. Subjects an officer has unblocked or
lifted are marked handled (login/handled.py) and left alone unless fresh evidence names them.
Each action becomes a :class:`~.models.ResponseRecord` and a ``security.response`` audit entry
with its explanation (which event, which detectors, which features).
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from carevault.security.assessment import Assessment
from carevault.security.events import Event, EventKind
from carevault.security.response import (
    ActionKind,
    Evidence,
    Executed,
    Finding,
    ResponseState,
    execute,
    infer_findings,
)
from carevault.web.accounts.models import User
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo
from carevault.web.diagnosis.models import ClientCutOff
from carevault.web.login import handled, throttle

from . import state as security_state
from .incidents import attach, done_targets
from .models import Incident, ResponseRecord, ResponseStatus, SecurityEvent
from .observed import Observed
from .runtime import incident_threshold, policy
from .sink import WebResponseSink

# The throttle's address evidence, as response findings.
ADDRESS_EVIDENCE = {
    throttle.EVIDENCE_NAMES: Evidence.ADDRESS_SPRAYING,
    throttle.EVIDENCE_FAILURES: Evidence.ADDRESS_SPRAYING,
    throttle.EVIDENCE_UNKNOWN: Evidence.UNKNOWN_NAMES,
    throttle.EVIDENCE_FORGED: Evidence.FORGED_PACKETS,
}
LOGIN_EVENT_KINDS = frozenset(
    {EventKind.LOGIN_FAILURE, EventKind.LOGIN_SUCCESS, EventKind.PACKET_REJECTED}
)


def findings_for(observed: Observed, assessment: Assessment) -> tuple[Finding, ...]:
    """The evidence behind an event: what it carries itself, plus the counts kept elsewhere
    that say what is attacked (the throttle's address limits, the account's run of failed
    logins at the suspension limit, an extraction cut-off of the actor)."""
    event, user = observed.event, observed.user
    found = list(infer_findings(assessment, event))
    if event.kind in LOGIN_EVENT_KINDS and event.address:
        for evidence, reason in throttle.address_evidence(event.address):
            found.append(Finding(ADDRESS_EVIDENCE[evidence], event.address, reason, fresh=True))
    if event.kind is EventKind.LOGIN_FAILURE and user is not None:
        limit = int(settings.LOGIN_SUSPEND_AFTER)
        # The failure being observed is audited before the throttle counts it: one more.
        stored = User.objects.filter(pk=user.pk).values_list("consecutive_failures", flat=True)
        consecutive = int(stored.first() or 0) + 1
        # The scorer's count over its window (the failures before this one) also shows an
        # account under attack, when successes between guesses reset the consecutive count.
        windowed = int(assessment.features.get("account_failures", 0)) + 1
        if consecutive >= limit:
            found.append(
                Finding(
                    Evidence.ACCOUNT_GUESSING,
                    user.username,
                    f"{consecutive} consecutive failed logins",
                    fresh=True,
                )
            )
        elif windowed >= limit:
            found.append(
                Finding(
                    Evidence.ACCOUNT_GUESSING,
                    user.username,
                    f"{windowed} failed logins within the scoring window",
                )
            )
    if (
        event.kind is EventKind.PREDICTION
        and user is not None
        and ClientCutOff.objects.filter(user=user, lifted_at__isnull=True).exists()
    ):
        found.append(
            Finding(
                Evidence.EXTRACTION_CUT_OFF,
                user.username,
                "the extraction guard cut off",
                fresh=True,
            )
        )
    return tuple(found)


def respond(row: SecurityEvent, observed: Observed, assessment: Assessment) -> None:
    """Once an event is scored: below the incident threshold nothing; else join (or open) its
    incident and carry out what the policy plans, capped by the evidence."""
    if assessment.risk < incident_threshold():
        return
    current = policy()
    findings = findings_for(observed, assessment)
    level = current.capped_level(assessment, observed.event, findings)
    incident = attach(row, observed.event, assessment, level)
    state = state_for(observed, incident)
    actions = current.plan(assessment, observed.event, state, findings)
    if not actions:
        return
    sink = WebResponseSink(incident, serving=observed.serving)
    client = observed.serving.client() if observed.serving is not None else None
    for result in execute(actions, sink):
        record_response(incident, row, result, client=client, ordered_by=None)


def state_for(observed: Observed, incident: Incident) -> ResponseState:
    """What is in force already for this event's subjects."""
    event, user, serving = observed.event, observed.user, observed.serving
    touched: set[str] = set()
    if event.actor:
        listed = SecurityEvent.objects.filter(incident=incident, actor=event.actor)
        for patients in listed.values_list("patients", flat=True)[:500]:
            touched.update(str(p) for p in patients or ())
    suspended = (
        user is not None and User.objects.filter(pk=user.pk, suspended_at__isnull=False).exists()
    )
    return ResponseState(
        live_session=event.session if observed.live else "",
        step_up_pending=bool(
            serving is not None and (serving.pending.step_up or serving.step_up_demanded())
        ),
        second_factor_proven=bool(
            event.kind is EventKind.LOGIN_SUCCESS and user is not None and user.has_totp
        ),
        known_accounts=frozenset({user.username}) if user is not None else frozenset(),
        blocked_addresses=(
            frozenset({event.address})
            if event.address and throttle.is_blocked(event.address)
            else frozenset()
        ),
        suspended_accounts=frozenset({user.username}) if suspended and user else frozenset(),
        revoked_accounts=done_targets(incident, ActionKind.REVOKE_SESSIONS),
        touched_patients=frozenset(touched),
        rotated_patients=done_targets(incident, ActionKind.ROTATE_KEYS),
        floor_raised=security_state.current_floor() is not None,
        handled=handled.handled(_subject_keys_of(event, user)),
    )


def _subject_keys_of(event: Event, user: User | None) -> list[str]:
    keys = [handled.FLOOR]
    if event.address:
        keys.append(handled.address(event.address))
    if user is not None:
        keys.append(handled.account(user.username))
    return keys


def record_response(
    incident: Incident,
    row: SecurityEvent | None,
    result: Executed,
    *,
    client: ClientInfo | None = None,
    ordered_by: User | None,
) -> ResponseRecord:
    """Keep and audit one executed action (ok or not), for ``client``: the request being
    served's (an automatic response) or the officer's (an officer's decision)."""
    action = result.action
    now = timezone.now()
    if not result.ok:
        status = ResponseStatus.FAILED
    elif action.reversible and result.note not in ("already blocked", "already suspended"):
        status = ResponseStatus.IN_FORCE
    else:
        status = ResponseStatus.DONE
    response = ResponseRecord.objects.create(
        incident=incident,
        event=row,
        at=now,
        action=action.kind.value,
        level=int(action.level),
        target=action.target[:200],
        explanation=action.explanation,
        note=result.note[:300],
        status=status,
        until=now + dt.timedelta(seconds=action.seconds) if action.seconds and result.ok else None,
        reversible=action.reversible and status == ResponseStatus.IN_FORCE,
        ordered_by=ordered_by,
    )
    if int(action.level) > incident.level:
        Incident.objects.filter(pk=incident.pk).update(level=int(action.level))
        incident.level = int(action.level)
    record(
        "security.response",
        actor=ordered_by,
        outcome=Outcome.ALERT if result.ok else Outcome.FAILED,
        target=response,
        patient_id=action.target if action.kind is ActionKind.ROTATE_KEYS else "",
        client=client,
        details={
            "incident": incident.pk,
            "event": row.pk if row is not None else None,
            "level": int(action.level),
            "level_name": action.level.label,
            "action": action.kind.value,
            "target": action.target,
            "ok": result.ok,
            "note": result.note,
            "explanation": action.explanation[:1000],
        },
    )
    return response
