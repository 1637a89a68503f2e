"""The graduated response policy: what to do about a scored event.

Four levels above "nothing", each answering a higher risk with a stronger, costlier action
(issue 5, "Automated responses"):

=====  ===========  =====================================================================
level  name         actions
=====  ===========  =====================================================================
1      step-up      demand a fresh second factor from the session (cheap for a real user:
                    one code, no lock-out)
2      contain      end the session, block the client address for a while
3      suspend      suspend the account, revoke every session of it (plus the address block)
4      rotate       rotate the data keys of the patients the attacker touched, raise the
                    system-wide encryption floor for a period (plus level 3 for whoever is
                    implicated)
=====  ===========  =====================================================================

The thresholds that map a risk in [0, 1] to a level are configuration
(:class:`Thresholds`, defaults 0.5 / 0.7 / 0.85 / 0.95). False positives must stay cheap at the
low levels, so level 1 never locks anyone out, and a risk alone never reaches level 4 unless it
is near-certain (the hard rules set risk 1: an AEAD failure on stored data is tampering).

Who an action hits depends on what the event implicates (:class:`Subjects`):

* the **session**, only when it is a logged-in session the caller can act on right now (the
  request being served). A session that cannot be reached (an event scored later, in a batch)
  is contained by revoking every session of its account instead; a step-up needs the session
  itself, so at level 1 such a session is left alone (false positives stay cheap);
* the **address** the event came from;
* the **account**, when the actor is an existing account: for an authenticated event that is
  the user who acted; for a failed login it is the account being guessed at, and suspending it
  is protection (what the login throttle does at its limit), never punishment;
* the **patients** the event touched (plus those touched earlier in the same incident).

An integrity failure on *stored* data (a decryption or signature failure at rest) implicates
no session, address or account: whoever read the record found the damage, they did not cause
it. Only the patients' keys and the floor answer it.

The plan never repeats what is already in force (:class:`ResponseState`), so the same attacker
sending a hundred events gets one address block, not a hundred.

Nothing here touches Django: the web layer implements :class:`ResponseSink`, and
:func:`execute` runs a plan against any sink (tests and the offline evaluator use
:class:`RecordingSink`).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from carevault.crypto import Suite

from .assessment import Assessment
from .events import Event, EventKind


class Level(enum.IntEnum):
    NONE = 0
    STEP_UP = 1
    CONTAIN = 2
    SUSPEND = 3
    ROTATE = 4

    @property
    def label(self) -> str:
        return _LEVEL_LABELS[self]


_LEVEL_LABELS = {
    Level.NONE: "none",
    Level.STEP_UP: "step-up",
    Level.CONTAIN: "contain",
    Level.SUSPEND: "suspend",
    Level.ROTATE: "rotate",
}


class ActionKind(enum.StrEnum):
    STEP_UP = "step_up"
    BLOCK_SESSION = "block_session"
    THROTTLE_ADDRESS = "throttle_address"
    SUSPEND_ACCOUNT = "suspend_account"
    REVOKE_SESSIONS = "revoke_sessions"
    ROTATE_KEYS = "rotate_keys"
    RAISE_FLOOR = "raise_floor"


# What the security officer can undo. A step-up is passed by its owner, an ended session or a
# revocation cannot be un-ended, and a rotated key stays rotated (old versions still decrypt).
REVERSIBLE = frozenset(
    {ActionKind.THROTTLE_ADDRESS, ActionKind.SUSPEND_ACCOUNT, ActionKind.RAISE_FLOOR}
)

# Integrity failures on data at rest: hard-rule evidence of tampering with the store.
AT_REST_KINDS = frozenset({EventKind.DECRYPTION_FAILURE, EventKind.SIGNATURE_FAILURE})


@dataclass(frozen=True)
class Thresholds:
    """The lowest risk of each level. Strictly increasing, all in (0, 1]."""

    step_up: float = 0.5
    contain: float = 0.7
    suspend: float = 0.85
    rotate: float = 0.95

    def __post_init__(self) -> None:
        values = self.as_tuple()
        if not all(0.0 < v <= 1.0 for v in values):
            raise ValueError(f"response thresholds must be in (0, 1], got {values}")
        if any(a >= b for a, b in itertools.pairwise(values)):
            raise ValueError(f"response thresholds must increase strictly, got {values}")

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.step_up, self.contain, self.suspend, self.rotate)

    def level(self, risk: float) -> Level:
        if risk >= self.rotate:
            return Level.ROTATE
        if risk >= self.suspend:
            return Level.SUSPEND
        if risk >= self.contain:
            return Level.CONTAIN
        if risk >= self.step_up:
            return Level.STEP_UP
        return Level.NONE

    def for_level(self, level: Level) -> float:
        """The lowest risk of ``level`` (0 for NONE)."""
        return (0.0, *self.as_tuple())[int(level)]

    @classmethod
    def parse(cls, text: str) -> Thresholds:
        """``"0.5,0.7,0.85,0.95"`` (step-up, contain, suspend, rotate)."""
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if len(parts) != 4:
            raise ValueError(
                f"four thresholds are needed (step-up, contain, suspend, rotate), got {text!r}"
            )
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"thresholds must be numbers, got {text!r}") from None
        return cls(*values)


@dataclass(frozen=True)
class ResponseConfig:
    thresholds: Thresholds = field(default_factory=Thresholds)
    # How long a contained address stays blocked.
    address_block_seconds: int = 900
    # The suite the floor is raised to, and for how long.
    floor_suite: str = Suite.AES_256_GCM.label
    floor_seconds: int = 24 * 3600

    def __post_init__(self) -> None:
        # A typo in the configuration must fail at start-up, not during an attack.
        object.__setattr__(self, "floor_suite", Suite.parse(self.floor_suite).label)
        if self.address_block_seconds < 1 or self.floor_seconds < 1:
            raise ValueError("response durations must be at least one second")


@dataclass(frozen=True)
class ResponseState:
    """What is already true for the subjects of an event (the caller looks it up)."""

    # The logged-in session the sink can act on now (the request being served), or "".
    live_session: str = ""
    # That session already owes a step-up.
    step_up_pending: bool = False
    # The event is a login that has just proved a second factor: asking for it again, or
    # ending the session, would answer the strongest proof there is with a lock-out.
    second_factor_proven: bool = False
    # Which actor names are real accounts (failed logins name accounts that may not exist).
    known_accounts: frozenset[str] = frozenset()
    blocked_addresses: frozenset[str] = frozenset()
    suspended_accounts: frozenset[str] = frozenset()
    # Accounts whose sessions were revoked already in this incident.
    revoked_accounts: frozenset[str] = frozenset()
    # Patients touched earlier in the incident, and those whose keys it rotated already.
    touched_patients: frozenset[str] = frozenset()
    rotated_patients: frozenset[str] = frozenset()
    floor_raised: bool = False


@dataclass(frozen=True)
class Subjects:
    """Who a plan may act on."""

    sessions: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    patients: tuple[str, ...] = ()
    # Accounts whose session the event came from but which cannot be reached now: containing
    # them revokes all their sessions.
    unreachable: tuple[str, ...] = ()

    @classmethod
    def of(cls, event: Event, state: ResponseState) -> Subjects:
        patients = tuple(sorted(set(event.patients) | state.touched_patients))
        if is_at_rest(event):
            return cls(patients=tuple(sorted(set(event.patients))))
        live = bool(event.session) and event.session == state.live_session
        account = event.actor if event.actor in state.known_accounts else ""
        return cls(
            sessions=(event.session,) if live else (),
            addresses=(event.address,) if event.address else (),
            accounts=(account,) if account else (),
            patients=patients,
            unreachable=(account,) if event.session and not live and account else (),
        )


@dataclass(frozen=True)
class ResponseAction:
    kind: ActionKind
    level: Level
    target: str  # session id (hash), address, account name, patient id or suite name
    explanation: str
    seconds: int = 0  # how long it lasts (address blocks, floors); 0: until lifted / for good

    @property
    def reversible(self) -> bool:
        return self.kind in REVERSIBLE


def is_at_rest(event: Event) -> bool:
    return event.kind in AT_REST_KINDS and event.stored_data


def explain(assessment: Assessment, event: Event, level: Level, *, limit: int = 5) -> str:
    """One paragraph for people: the risk and its level, the event, and what drove it (rules,
    then the strongest detectors, then the features that pushed the score most)."""
    who = f" by {event.actor}" if event.actor else ""
    where = f" from {event.address}" if event.address else ""
    parts = [f"risk {assessment.risk:.2f} ({level.label}) on {event.kind.value}{who}{where}"]
    if assessment.rules:
        parts.append("rules: " + ", ".join(assessment.rules))
    if assessment.detectors:
        top = sorted(assessment.detectors.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        parts.append("detectors: " + ", ".join(f"{name} {value:.2f}" for name, value in top))
    if assessment.features:
        shown = list(assessment.features.items())[:limit]
        parts.append("features: " + ", ".join(f"{name}={_number(value)}" for name, value in shown))
    return "; ".join(parts)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


class ResponsePolicy:
    """Turns an assessment into a list of actions (see the module docstring)."""

    def __init__(self, config: ResponseConfig | None = None) -> None:
        self.config = config or ResponseConfig()

    @property
    def thresholds(self) -> Thresholds:
        return self.config.thresholds

    def level(self, risk: float) -> Level:
        return self.config.thresholds.level(risk)

    def plan(
        self, assessment: Assessment, event: Event, state: ResponseState
    ) -> list[ResponseAction]:
        level = self.level(assessment.risk)
        if level is Level.NONE:
            return []
        actions = self.plan_level(
            level, Subjects.of(event, state), state, explain(assessment, event, level)
        )
        if state.second_factor_proven and event.kind is EventKind.LOGIN_SUCCESS:
            # Below suspension, a login that proved both factors is answered by nothing: the
            # owner has just given the strongest proof the system can ask for.
            actions = [a for a in actions if a.level >= Level.SUSPEND]
        return actions

    def plan_level(
        self, level: Level, subjects: Subjects, state: ResponseState, explanation: str
    ) -> list[ResponseAction]:
        """The actions of ``level`` against ``subjects``, minus what is in force already.

        Levels are cumulative where that adds protection: containing also throttles, suspending
        also throttles, rotating also suspends whoever is implicated. A lower action that a
        higher one covers is left out (no step-up for a session being ended, no session block
        when all the account's sessions are being revoked).
        """
        config = self.config
        actions: list[ResponseAction] = []

        def add(kind: ActionKind, at: Level, target: str, seconds: int = 0) -> None:
            actions.append(ResponseAction(kind, at, target, explanation, seconds))

        revoking = level >= Level.SUSPEND and bool(subjects.accounts)
        if level == Level.STEP_UP:
            for session in subjects.sessions:
                if not (state.step_up_pending or state.second_factor_proven):
                    add(ActionKind.STEP_UP, Level.STEP_UP, session)
        if level >= Level.CONTAIN:
            if not revoking:
                for session in subjects.sessions:
                    add(ActionKind.BLOCK_SESSION, Level.CONTAIN, session)
                for account in subjects.unreachable:
                    if account not in state.revoked_accounts:
                        add(ActionKind.REVOKE_SESSIONS, Level.CONTAIN, account)
            for address in subjects.addresses:
                if address not in state.blocked_addresses:
                    add(
                        ActionKind.THROTTLE_ADDRESS,
                        Level.CONTAIN,
                        address,
                        config.address_block_seconds,
                    )
        if revoking:
            for account in subjects.accounts:
                if account not in state.suspended_accounts:
                    add(ActionKind.SUSPEND_ACCOUNT, Level.SUSPEND, account)
                if account not in state.revoked_accounts:
                    add(ActionKind.REVOKE_SESSIONS, Level.SUSPEND, account)
        if level >= Level.ROTATE:
            # The floor first: the new data keys are then made under it.
            if not state.floor_raised:
                add(ActionKind.RAISE_FLOOR, Level.ROTATE, config.floor_suite, config.floor_seconds)
            for patient in subjects.patients:
                if patient not in state.rotated_patients:
                    add(ActionKind.ROTATE_KEYS, Level.ROTATE, patient)
        return actions


class ResponseSink(Protocol):
    """Carries out actions (the web layer: accounts, throttle, vault, the floor). Each method
    returns a short note for the record (e.g. the new key version) and raises if it failed."""

    def step_up(self, action: ResponseAction) -> str: ...

    def block_session(self, action: ResponseAction) -> str: ...

    def throttle_address(self, action: ResponseAction) -> str: ...

    def suspend_account(self, action: ResponseAction) -> str: ...

    def revoke_sessions(self, action: ResponseAction) -> str: ...

    def rotate_keys(self, action: ResponseAction) -> str: ...

    def raise_floor(self, action: ResponseAction) -> str: ...


@dataclass(frozen=True)
class Executed:
    action: ResponseAction
    ok: bool
    note: str  # what the sink reported, or why it failed


def execute(actions: Iterable[ResponseAction], sink: ResponseSink) -> list[Executed]:
    """Run every action; one that fails does not stop the others (a failed key rotation must
    not leave the attacker's session open)."""
    results = []
    for action in actions:
        method = getattr(sink, action.kind.value)
        try:
            note = str(method(action))
        except Exception as exc:  # any sink failure is reported, never raised
            results.append(Executed(action, False, f"{type(exc).__name__}: {exc}"[:300]))
        else:
            results.append(Executed(action, True, note))
    return results


class RecordingSink:
    """A sink that only remembers what it was asked to do (tests, offline evaluation)."""

    def __init__(self) -> None:
        self.done: list[ResponseAction] = []

    def _note(self, action: ResponseAction) -> str:
        self.done.append(action)
        return "recorded"

    def step_up(self, action: ResponseAction) -> str:
        return self._note(action)

    def block_session(self, action: ResponseAction) -> str:
        return self._note(action)

    def throttle_address(self, action: ResponseAction) -> str:
        return self._note(action)

    def suspend_account(self, action: ResponseAction) -> str:
        return self._note(action)

    def revoke_sessions(self, action: ResponseAction) -> str:
        return self._note(action)

    def rotate_keys(self, action: ResponseAction) -> str:
        return self._note(action)

    def raise_floor(self, action: ResponseAction) -> str:
        return self._note(action)

    def kinds(self) -> Sequence[ActionKind]:
        return [a.kind for a in self.done]
