"""The security officer's decisions about incidents and responses. Each is atomic, takes the
acting officer and a :class:`~carevault.web.clientinfo.ClientInfo` (never a request), and writes
the audit log (``security.*`` entries, which the security layer does not treat as events)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from carevault.security.response import ActionKind, Level, execute
from carevault.web.accounts.models import Role, User
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import NO_CLIENT, ClientInfo
from carevault.web.errors import Conflict, NotAllowed
from carevault.web.login import handled, throttle

from . import state as security_state
from .incidents import state_of_incident, subjects_of_incident
from .models import Incident, IncidentStatus, ResponseRecord, ResponseStatus
from .responses import record_response
from .runtime import policy
from .sink import WebResponseSink


def _require_officer(acting_user: User) -> None:
    if acting_user.role != Role.ADMIN or not acting_user.is_active:
        raise NotAllowed("only security officers decide about incidents")


def _locked(incident: Incident) -> Incident:
    return Incident.objects.select_for_update().get(pk=incident.pk)


@transaction.atomic
def do_acknowledge_incident(
    acting_user: User, incident: Incident, *, client: ClientInfo = NO_CLIENT
) -> Incident:
    """The officer has seen it (it stays active: new events still join it)."""
    _require_officer(acting_user)
    locked = _locked(incident)
    if locked.status != IncidentStatus.OPEN:
        raise Conflict(f"incident #{locked.pk} is {locked.get_status_display().lower()} already")
    locked.status = IncidentStatus.ACKNOWLEDGED
    locked.acknowledged_by = acting_user
    locked.acknowledged_at = timezone.now()
    locked.save(update_fields=["status", "acknowledged_by", "acknowledged_at"])
    record(
        "security.incident_acknowledged",
        actor=acting_user,
        target=locked,
        client=client,
        details={"incident": locked.pk, "level": locked.level, "title": locked.title},
    )
    return locked


@transaction.atomic
def do_close_incident(
    acting_user: User, incident: Incident, *, client: ClientInfo = NO_CLIENT
) -> Incident:
    """Resolved: new events open a new incident. Responses in force stay (lift them apart)."""
    _require_officer(acting_user)
    locked = _locked(incident)
    if locked.status == IncidentStatus.CLOSED:
        raise Conflict(f"incident #{locked.pk} is closed already")
    locked.status = IncidentStatus.CLOSED
    locked.closed_by = acting_user
    locked.closed_at = timezone.now()
    locked.save(update_fields=["status", "closed_by", "closed_at"])
    record(
        "security.incident_closed",
        actor=acting_user,
        target=locked,
        client=client,
        details={"incident": locked.pk, "level": locked.level},
    )
    return locked


@transaction.atomic
def do_escalate_incident(
    acting_user: User, incident: Incident, *, client: ClientInfo = NO_CLIENT
) -> list[ResponseRecord]:
    """Take the next level's actions now, against everyone and everything the incident is
    about (its addresses, accounts and touched patients). No session is acted on directly: the
    officer's request is not the attacker's; level 3 reaches every session of an account."""
    _require_officer(acting_user)
    locked = _locked(incident)
    if locked.status == IncidentStatus.CLOSED:
        raise Conflict(f"incident #{locked.pk} is closed: nothing to escalate")
    if locked.level >= Level.ROTATE:
        raise Conflict(f"incident #{locked.pk} is at the highest level already")
    level = Level(locked.level + 1)
    subjects = subjects_of_incident(locked)
    state = state_of_incident(locked, subjects)
    explanation = (
        f"escalated to {level.label} by {acting_user.username}; "
        f"incident #{locked.pk}: {locked.explanation}"
    )[:2000]
    actions = policy().plan_level(level, subjects, state, explanation)
    locked.level = int(level)
    locked.escalations += 1
    locked.status = IncidentStatus.ACKNOWLEDGED
    locked.acknowledged_by = locked.acknowledged_by or acting_user
    locked.acknowledged_at = locked.acknowledged_at or timezone.now()
    locked.save()
    record(
        "security.incident_escalated",
        actor=acting_user,
        outcome=Outcome.ALERT,
        target=locked,
        client=client,
        details={
            "incident": locked.pk,
            "level": int(level),
            "level_name": level.label,
            "actions": [f"{a.kind.value}:{a.target}" for a in actions],
        },
    )
    sink = WebResponseSink(locked, serving=None, ordered_by=acting_user)
    return [
        record_response(locked, None, result, client=client, ordered_by=acting_user)
        for result in execute(actions, sink)
    ]


def _lift_effect(acting_user: User, response: ResponseRecord, client: ClientInfo) -> str:
    kind = ActionKind(response.action)
    if kind is ActionKind.THROTTLE_ADDRESS:
        ended = throttle.unblock_address(response.target, actor=acting_user, client=client)
        return "address unblocked" if ended else "the block had ended already"
    if kind is ActionKind.SUSPEND_ACCOUNT:
        person = User.objects.filter(username=response.target).first()
        if person is None:
            return "the account no longer exists"
        lifted = throttle.lift_suspension(
            person,
            actor=acting_user,
            reason=f"security response #{response.pk} lifted by a security officer",
            client=client,
        )
        return "suspension lifted" if lifted else "the account was not suspended any more"
    if kind is ActionKind.RAISE_FLOOR:
        floor = security_state.lower_floor()
        # Lasts: the evidence that raised it (a tampered record read again) does not re-raise it.
        handled.mark(handled.FLOOR, by=acting_user.username)
        return f"floor {floor.suite} lowered" if floor else "the floor had ended already"
    raise Conflict("this response cannot be undone")  # pragma: no cover - filtered by caller


@transaction.atomic
def do_lift_response(
    acting_user: User,
    response: ResponseRecord,
    *,
    reason: str = "",
    client: ClientInfo = NO_CLIENT,
) -> ResponseRecord:
    """Undo a reversible response (unblock the address, unsuspend the account through the
    throttle, lower the floor); audited with the lift's own entry and the effect's."""
    _require_officer(acting_user)
    locked = ResponseRecord.objects.select_for_update().get(pk=response.pk)
    if not locked.reversible:
        raise Conflict("this response cannot be undone (it was one-off, or it failed)")
    if locked.status != ResponseStatus.IN_FORCE:
        raise Conflict(f"this response is {locked.get_status_display().lower()} already")
    effect = _lift_effect(acting_user, locked, client)
    locked.status = ResponseStatus.LIFTED
    locked.lifted_by = acting_user
    locked.lifted_at = timezone.now()
    locked.lift_reason = (reason or "lifted by a security officer")[:200]
    locked.save(update_fields=["status", "lifted_by", "lifted_at", "lift_reason"])
    record(
        "security.response_lifted",
        actor=acting_user,
        target=locked,
        client=client,
        details={
            "incident": locked.incident_id,
            "response": locked.pk,
            "action": locked.action,
            "target": locked.target,
            "effect": effect,
        },
    )
    return locked


@transaction.atomic
def do_lower_floor(acting_user: User, *, client: ClientInfo = NO_CLIENT) -> bool:
    """End the raised encryption floor now (and mark the responses that raised it lifted).
    Audited; False if no floor was in force."""
    _require_officer(acting_user)
    floor = security_state.lower_floor()
    handled.mark(handled.FLOOR, by=acting_user.username)
    now = timezone.now()
    raised = ResponseRecord.objects.select_for_update().filter(
        action=ActionKind.RAISE_FLOOR.value, status=ResponseStatus.IN_FORCE
    )
    ids = list(raised.values_list("pk", flat=True))
    raised.update(
        status=ResponseStatus.LIFTED,
        lifted_by=acting_user,
        lifted_at=now,
        lift_reason="floor lowered by a security officer",
    )
    if floor is None and not ids:
        return False
    record(
        "security.floor_lowered",
        actor=acting_user,
        client=client,
        details={
            "suite": floor.suite if floor else "",
            "until": floor.until.isoformat() if floor else "",
            "responses": ids,
        },
    )
    return floor is not None


@transaction.atomic
def do_start_reencryption(acting_user: User, *, client: ClientInfo = NO_CLIENT) -> Any:
    """Queue (or reuse) the job that brings stored data up to the raised floor and start it in
    the background. Audited; Conflict when no floor is raised (nothing to bring data up to)."""
    from carevault.crypto import Suite
    from carevault.web.vault import reencrypt

    _require_officer(acting_user)
    floor = security_state.current_floor()
    if floor is None:
        raise Conflict("no floor is raised: stored data already meets the policy's own floors")
    job = reencrypt.escalate(Suite.parse(floor.suite), f"started by {acting_user.username}")
    record(
        "keys.reencrypt_started",
        actor=acting_user,
        client=client,
        details={"job": job.pk, "suite": job.target_suite},
    )
    return job
