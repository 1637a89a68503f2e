"""The recorded clinic day: benign traffic from the real application, as a replayable event log.

``carevault security record-day`` (carevault.web.securitycore.clinic_day_recorder) drives a real
server through a clinic day in Chromium and writes the security events the application emitted,
one JSON object per line, in the order and on the clock of the day it plays. The log shipped
with CareVault is package data (``data/clinic_day.jsonl``).

:func:`replay` runs a log through the same chain as the request path: a fresh feature
extractor, the trained scorer, the hard rules and the response planner, and counts per session
what a person would have met: a step-up, a block (of the session, the address, or every session
of the account), a suspension, or key actions. Every event on the recorded day is benign, so the
goal for every count is 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from .assessment import RiskScorer
from .events import AttackClass, Event, EventKind
from .response import ActionKind, ResponsePolicy, ResponseState

SHIPPED_LOG = "clinic_day.jsonl"
_FIELDS = {f.name for f in fields(Event)}
_DEFAULTS = {f.name: f.default for f in fields(Event) if f.name not in ("patients",)}

# What a person meets for each action (key actions are counted, but nobody is locked out).
STEPPED_UP = frozenset({ActionKind.STEP_UP})
BLOCKED = frozenset(
    {ActionKind.BLOCK_SESSION, ActionKind.THROTTLE_ADDRESS, ActionKind.REVOKE_SESSIONS}
)
SUSPENDED = frozenset({ActionKind.SUSPEND_ACCOUNT})
KEYS = frozenset({ActionKind.ROTATE_KEYS, ActionKind.RAISE_FLOOR})


# -- the log -----------------------------------------------------------------------------------


def to_json(event: Event) -> str:
    """One line of the log: the fields that differ from their defaults (labels are dropped:
    recorded traffic is benign by definition)."""
    data = asdict(event)
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name == "label":
            continue
        if name == "patients":
            if value:
                out[name] = list(value)
            continue
        if value != _DEFAULTS.get(name):
            out[name] = value.value if isinstance(value, EventKind) else value
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


def from_json(line: str) -> Event:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a clinic-day line must be a JSON object")
    unknown = set(data) - _FIELDS
    if unknown:
        raise ValueError(f"unknown event fields: {sorted(unknown)}")
    data["kind"] = EventKind(data["kind"])
    data["patients"] = tuple(str(p) for p in data.get("patients", ()))
    data["label"] = AttackClass.BENIGN
    return Event(**data)


def write(path: str | Path, events: Iterable[Event]) -> int:
    lines = [to_json(e) for e in events]
    Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def read(path: str | Path) -> list[Event]:
    return list(_parse(Path(path).read_text(encoding="utf-8").splitlines()))


def shipped() -> list[Event]:
    """The clinic day recorded for this version of CareVault (package data)."""
    text = resources.files("carevault.security").joinpath("data", SHIPPED_LOG).read_text("utf-8")
    return list(_parse(text.splitlines()))


def _parse(lines: Sequence[str]) -> Iterator[Event]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield from_json(line)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"clinic-day log line {number}: {exc}") from None


# -- replay ------------------------------------------------------------------------------------


def session_of(event: Event) -> str:
    """The session a person would say an event belongs to: the evaluation groups events by it
    (training's cross-validation folds too, so one session never straddles train and test)."""
    hour = int(event.at // 3600)
    if event.session:
        return f"s:{event.session}"
    if event.kind is EventKind.HOST:
        return f"host:{hour}"
    return f"pre:{event.actor}|{event.address}|{hour}"


@dataclass
class SessionOutcome:
    key: str
    actor: str
    events: int = 0
    max_risk: float = 0.0
    alerts: int = 0
    stepped_up: bool = False
    blocked: bool = False
    suspended: bool = False
    keys: bool = False
    why: list[str] = field(default_factory=list)


@dataclass
class DayReport:
    events: int
    sessions: list[SessionOutcome]

    @property
    def stepped_up(self) -> int:
        return sum(s.stepped_up for s in self.sessions)

    @property
    def blocked(self) -> int:
        return sum(s.blocked for s in self.sessions)

    @property
    def suspended(self) -> int:
        return sum(s.suspended for s in self.sessions)

    @property
    def key_actions(self) -> int:
        return sum(s.keys for s in self.sessions)

    @property
    def alerted(self) -> int:
        return sum(s.alerts > 0 for s in self.sessions)

    @property
    def max_risk(self) -> float:
        return max((s.max_risk for s in self.sessions), default=0.0)

    def as_dict(self, *, limit: int = 10) -> dict[str, Any]:
        touched = [s for s in self.sessions if s.stepped_up or s.blocked or s.suspended or s.keys]
        riskiest = sorted(self.sessions, key=lambda s: -s.max_risk)[:limit]
        return {
            "events": self.events,
            "sessions": len(self.sessions),
            "stepped_up": self.stepped_up,
            "blocked": self.blocked,
            "suspended": self.suspended,
            "key_actions": self.key_actions,
            "sessions_alerted": self.alerted,
            "max_risk": self.max_risk,
            "responses": [
                {"session": s.key, "actor": s.actor, "max_risk": s.max_risk, "why": s.why[:3]}
                for s in touched[:limit]
            ],
            "riskiest": [
                {"session": s.key, "actor": s.actor, "events": s.events, "max_risk": s.max_risk}
                for s in riskiest
            ],
        }


def replay(
    events: Sequence[Event], scorer: RiskScorer, policy: ResponsePolicy | None = None
) -> DayReport:
    """Score the events in time order and plan the responses the web layer would carry out.

    The state the planner sees is what earlier responses in the replay put in force (a pending
    step-up, blocked addresses, suspended accounts), as the engine looks it up per incident; every
    account that logged in on the day is a known account.
    """
    policy = policy or ResponsePolicy()
    ordered = sorted(events, key=lambda e: e.at)
    known = frozenset(e.actor for e in ordered if e.role and not e.actor.startswith("?"))
    step_up: set[str] = set()
    blocked: set[str] = set()
    suspended: set[str] = set()
    revoked: set[str] = set()
    floor = False
    outcomes: dict[str, SessionOutcome] = {}
    for event in ordered:
        key = session_of(event)
        outcome = outcomes.get(key)
        if outcome is None:
            outcome = outcomes[key] = SessionOutcome(key, event.actor)
        outcome.events += 1
        assessment = scorer.assess(event)
        outcome.max_risk = max(outcome.max_risk, float(assessment.risk))
        if assessment.risk >= policy.thresholds.step_up:
            outcome.alerts += 1
        state = ResponseState(
            live_session=event.session,
            step_up_pending=event.session in step_up,
            known_accounts=known,
            blocked_addresses=frozenset(blocked),
            suspended_accounts=frozenset(suspended),
            revoked_accounts=frozenset(revoked),
            floor_raised=floor,
        )
        for action in policy.plan(assessment, event, state):
            kind = action.kind
            outcome.why.append(f"{kind.value}: {action.explanation}")
            if kind in STEPPED_UP:
                outcome.stepped_up = True
                step_up.add(action.target)
            elif kind in BLOCKED:
                outcome.blocked = True
                if kind is ActionKind.THROTTLE_ADDRESS:
                    blocked.add(action.target)
                elif kind is ActionKind.REVOKE_SESSIONS:
                    revoked.add(action.target)
            elif kind in SUSPENDED:
                outcome.suspended = True
                suspended.add(action.target)
            elif kind in KEYS:
                outcome.keys = True
                floor = floor or kind is ActionKind.RAISE_FLOOR
    return DayReport(len(ordered), list(outcomes.values()))


def describe(events: Sequence[Event]) -> dict[str, Any]:
    """What the log holds (for the report and the docs)."""
    kinds: dict[str, int] = {}
    for e in events:
        kinds[e.kind.value] = kinds.get(e.kind.value, 0) + 1
    actors = {e.actor for e in events if e.actor}
    return {
        "events": len(events),
        "kinds": dict(sorted(kinds.items())),
        "accounts": len({a for a in actors if not a.startswith("?")}),
        "unknown_names": len({a for a in actors if a.startswith("?")}),
        "addresses": len({e.address for e in events if e.address}),
        "sessions": len({e.session for e in events if e.session}),
        "hours": (max(e.at for e in events) - min(e.at for e in events)) / 3600 if events else 0,
    }
