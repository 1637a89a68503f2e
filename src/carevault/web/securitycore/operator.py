"""The security officer's way back in from the command line (issue 12): ``carevault security
status | incidents | unblock ADDRESS | lift USER | lift-floor``.

Whoever can run commands on the server holds the data directory and the master key already, so
the command line needs no sign-in and cannot be locked out by anything the web answers: no
address block, back-off or suspension stands between the officer and these functions. Each
one does what the dashboard's button does (through the same throttle and state functions),
marks the evidence handled so the response does not fire again on it, marks the responses it
ends as lifted, and writes the audit log (actor: the system, ``via: command line``).

The CLI (cli/security.py) only parses arguments and prints; everything is here, so it is tested
without a subprocess.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from carevault.security.response import ActionKind, Level, lifts
from carevault.web.accounts.models import User
from carevault.web.audit.log import record
from carevault.web.login import handled, throttle

from . import state as security_state
from .models import ACTIVE_STATUSES, Incident, ResponseRecord, ResponseStatus, SecurityEvent

# How long ``activity`` waits for events another process's background scorer has claimed.
SETTLE_SECONDS = 30.0

VIA = "command line"


class OperatorError(Exception):
    """Bad input for an operator command (the CLI prints it and exits non-zero)."""


@dataclass(frozen=True)
class Done:
    """What a command did: one sentence for people, and facts for ``--json``."""

    message: str
    facts: dict[str, Any]


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def status() -> dict[str, Any]:
    """Blocked addresses, paused accounts, the floor, active incidents, the thresholds."""
    floor = security_state.current_floor()
    blocked = [
        {
            "address": b.address,
            "since": _iso(b.since),
            "until": _iso(b.until),
            "reason": b.reason,
            "evidence": b.evidence,
            "refused_this_window": throttle.refused_count(b.address),
            "who_lifts": lifts(
                ActionKind.THROTTLE_ADDRESS,
                b.address,
                max(1, int((b.until - b.since).total_seconds())),
            ),
        }
        for b in throttle.blocked_addresses()
    ]
    suspended = [
        {
            "username": u.username,
            "since": _iso(u.suspended_at),
            "reason": u.suspension_reason,
            "who_lifts": lifts(ActionKind.SUSPEND_ACCOUNT, u.username),
        }
        for u in throttle.suspended_users()
    ]
    return {
        "blocked_addresses": blocked,
        "suspended_accounts": suspended,
        "floor": (
            {
                "suite": floor.suite,
                "until": _iso(floor.until),
                "reason": floor.reason,
                "who_lifts": lifts(ActionKind.RAISE_FLOOR, floor.suite),
            }
            if floor is not None
            else None
        ),
        "active_incidents": Incident.objects.filter(status__in=ACTIVE_STATUSES).count(),
        "thresholds": throttle.describe(),
        "scoring": _scoring_health(),
    }


def _scoring_health() -> dict[str, Any]:
    from . import scorer

    return scorer.health()


def incidents(limit: int = 20) -> list[dict[str, Any]]:
    """Active incidents, newest first, with the responses in force and who may lift them."""
    rows = Incident.objects.filter(status__in=ACTIVE_STATUSES).order_by("-updated_at")[:limit]
    listed = []
    for incident in rows:
        in_force = incident.responses.filter(status=ResponseStatus.IN_FORCE).order_by("at")
        listed.append(
            {
                "id": incident.pk,
                "title": incident.title,
                "status": incident.status,
                "level": Level(min(incident.level, Level.ROTATE)).label,
                "risk": round(incident.risk, 3),
                "events": incident.event_count,
                "updated": _iso(incident.updated_at),
                "in_force": [
                    {
                        "action": r.action,
                        "target": r.target,
                        "until": _iso(r.until),
                        "who_lifts": lifts(ActionKind(r.action), r.target),
                    }
                    for r in in_force
                ],
            }
        )
    return listed


def activity(since: dt.datetime, limit: int = 20_000) -> dict[str, Any]:
    """What the security layer saw and did since a moment: every scored event (time, kind,
    address, account, outcome, risk, level, incident) and every incident opened or updated
    since, whatever its status, with all its responses (in force or not). The attack lab reads
    it after each scenario to say whether, when and how hard the AI layer answered; the officer
    reads it after a drill. Events still unscored are scored first (and those another process's
    background scorer holds are waited for, bounded by SETTLE_SECONDS), so nothing is missing."""
    from . import scorer

    scorer.settle(SETTLE_SECONDS)
    events = [
        {
            "at": row.at.isoformat(),
            "kind": row.kind,
            "address": row.address,
            "actor": row.actor,
            "outcome": row.outcome,
            "risk": round(float(row.risk), 4) if row.risk is not None else None,
            "level": row.level,
            "incident": row.incident_id,
        }
        for row in SecurityEvent.objects.filter(at__gte=since).order_by("at", "pk")[:limit]
    ]
    listed = []
    for incident in Incident.objects.filter(updated_at__gte=since).order_by("opened_at"):
        listed.append(
            {
                "id": incident.pk,
                "title": incident.title,
                "status": incident.status,
                "opened": incident.opened_at.isoformat(),
                "updated": incident.updated_at.isoformat(),
                "level": Level(min(incident.level, Level.ROTATE)).label,
                "level_value": int(incident.level),
                "risk": round(incident.risk, 4),
                "events": incident.event_count,
                "rules": list(incident.rules),
                "responses": [
                    {
                        "at": r.at.isoformat(),
                        "action": r.action,
                        "level": int(r.level),
                        "target": r.target,
                        "status": r.status,
                        "until": _iso(r.until),
                    }
                    for r in incident.responses.order_by("at")
                ],
            }
        )
    return {"since": since.isoformat(), "events": events, "incidents": listed}


def _mark_lifted(action: ActionKind, target: str | None, reason: str) -> list[int]:
    rows = ResponseRecord.objects.filter(action=action.value, status=ResponseStatus.IN_FORCE)
    if target is not None:
        rows = rows.filter(target=target)
    ids = list(rows.values_list("pk", flat=True))
    rows.update(status=ResponseStatus.LIFTED, lifted_at=timezone.now(), lift_reason=reason[:200])
    return ids


@transaction.atomic
def unblock(address: str) -> Done:
    """End an address block now and mark its evidence handled."""
    text = address.strip()
    try:
        cleaned = str(ipaddress.ip_address(text))
    except ValueError:
        raise OperatorError(f"{address!r} is not an IP address (e.g. 192.0.2.10)") from None
    ended = throttle.unblock_address(cleaned, actor=None)
    handled.mark(handled.address(cleaned), by=VIA)
    lifted = _mark_lifted(ActionKind.THROTTLE_ADDRESS, cleaned, "unblocked on the command line")
    if not ended:
        record(
            "security.address_handled",
            details={"address": cleaned, "via": VIA, "responses": lifted},
        )
    message = (
        f"unblocked {cleaned}; its recent failures are forgotten and marked handled for "
        f"{handled.hours()} h"
        if ended
        else f"{cleaned} was not blocked; its recent failures are forgotten and marked handled "
        f"for {handled.hours()} h"
    )
    return Done(message, {"address": cleaned, "was_blocked": ended, "responses_lifted": lifted})


@transaction.atomic
def lift(username: str) -> Done:
    """Lift an account's suspension and back-off now and mark its evidence handled."""
    name = username.strip()
    if not name:
        raise OperatorError("give the account's username")
    user = User.objects.filter(username__iexact=name).first()
    if user is None:
        raise OperatorError(f"no account is named {name!r}")
    was_suspended = throttle.lift_suspension(user, actor=None, reason=f"lifted on the {VIA}")
    handled.mark(handled.account(user.username), by=VIA)
    lifted = _mark_lifted(ActionKind.SUSPEND_ACCOUNT, user.username, "lifted on the command line")
    message = (
        f"lifted the suspension of {user.username}; its back-off is cleared"
        if was_suspended
        else f"{user.username} was not suspended; its back-off is cleared"
    )
    return Done(
        message,
        {"username": user.username, "was_suspended": was_suspended, "responses_lifted": lifted},
    )


@transaction.atomic
def lift_floor() -> Done:
    """Lower a raised encryption floor now and mark its evidence handled."""
    floor = security_state.lower_floor()
    handled.mark(handled.FLOOR, by=VIA)
    lifted = _mark_lifted(ActionKind.RAISE_FLOOR, None, "floor lowered on the command line")
    record(
        "security.floor_lowered",
        details={
            "suite": floor.suite if floor else "",
            "until": _iso(floor.until) if floor else "",
            "responses": lifted,
            "via": VIA,
        },
    )
    if floor is None:
        return Done("no floor was raised; nothing to lower", {"lowered": None})
    return Done(
        f"lowered the floor {floor.suite} (it was raised until {_iso(floor.until)})",
        {"lowered": floor.suite, "responses_lifted": lifted},
    )


def render_status(facts: dict[str, Any]) -> str:
    lines = []
    blocked = facts["blocked_addresses"]
    lines.append(f"blocked addresses: {len(blocked)}")
    for b in blocked:
        lines.append(
            f"  {b['address']} until {b['until']}: {b['reason']} "
            f"({b['refused_this_window']} refused this window); {b['who_lifts']}"
        )
    suspended = facts["suspended_accounts"]
    lines.append(f"suspended accounts: {len(suspended)}")
    for s in suspended:
        lines.append(f"  {s['username']} since {s['since']}: {s['reason']}; {s['who_lifts']}")
    floor = facts["floor"]
    if floor is None:
        lines.append("encryption floor: not raised")
    else:
        lines.append(
            f"encryption floor: {floor['suite']} until {floor['until']} ({floor['reason']}); "
            f"{floor['who_lifts']}"
        )
    lines.append(f"active incidents: {facts['active_incidents']}")
    scoring = facts["scoring"]
    over = f" (over the high-water mark {scoring['high_water']})"
    lines.append(
        f"scoring: {scoring['mode']}; {scoring['backlog']} events pending"
        + (over if scoring["over_high_water"] else "")
        + f", {scoring['queued']}/{scoring['queue_bound']} queued in this process"
    )
    t = facts["thresholds"]
    lines.append(
        f"limits: back-off after {t['backoff_after']} failures, suspension after "
        f"{t['suspend_after']}; an address is blocked at {t['address_max_usernames']} account "
        f"names or {t['address_max_failures']} failures per {t['window_minutes']} min, "
        f"{t['address_unknown_per_minute']} unknown names a minute or "
        f"{t['address_max_forged_packets']} forged packets, for {t['block_minutes']} min"
    )
    return "\n".join(lines)


def render_incidents(listed: list[dict[str, Any]]) -> str:
    if not listed:
        return "no active incidents"
    lines = []
    for i in listed:
        lines.append(
            f"#{i['id']} [{i['level']}, {i['status']}] {i['title']} "
            f"(risk {i['risk']}, {i['events']} events, last {i['updated']})"
        )
        for r in i["in_force"]:
            until = f" until {r['until']}" if r["until"] else ""
            lines.append(f"    {r['action']} {r['target']}{until}: {r['who_lifts']}")
    return "\n".join(lines)
