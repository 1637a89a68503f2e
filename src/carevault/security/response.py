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

**Responses in proportion to the evidence** (issue 12). A risk says *how sure* the scorer is
that something is wrong; it does not say *what* is attacked. So a plan is capped by the
evidence behind it (:class:`Finding`, one :class:`Evidence` kind each): every kind of evidence
may cause only the responses in :data:`PERMITTED_BY_FINDING`. Failed sign-ins act on the
account (the throttle's back-off, then suspension at its limit), never on an address shared by
honest users and never on keys or the encryption floor; an address is blocked only on evidence
of an attack *from* it (many account names, unknown names at a machine's rate, forged or
replayed packets); raising the floor, rotating keys and re-encrypting answer only evidence that
data or keys may be exposed (tampered ciphertext at rest, a stolen-session pattern, a model
extraction cut-off). A caller that passes no findings gets the evidence the event itself
carries (:func:`infer_findings`), which is the weakest reading of it. An officer's escalation
(:meth:`ResponsePolicy.plan_level`) is a person's decision and is not capped.

Every action says what it is for (:attr:`ResponseAction.purpose`), how long it lasts
(:attr:`ResponseAction.duration`) and who may lift it (:attr:`ResponseAction.who_lifts`).

Nothing here touches Django: the web layer implements :class:`ResponseSink`, and
:func:`execute` runs a plan against any sink (tests and the offline evaluator use
:class:`RecordingSink`).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Mapping, Sequence
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
    # Watched, nobody acted on: what evidence that permits no response gets.
    Level.NONE: "observe",
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

# The level each action belongs to when nothing else says (an evidence cap keeps an incident at
# the level of what its evidence may cause).
NATURAL_LEVEL: Mapping[ActionKind, Level] = {
    ActionKind.STEP_UP: Level.STEP_UP,
    ActionKind.BLOCK_SESSION: Level.CONTAIN,
    ActionKind.THROTTLE_ADDRESS: Level.CONTAIN,
    ActionKind.REVOKE_SESSIONS: Level.SUSPEND,
    ActionKind.SUSPEND_ACCOUNT: Level.SUSPEND,
    ActionKind.ROTATE_KEYS: Level.ROTATE,
    ActionKind.RAISE_FLOOR: Level.ROTATE,
}


class Evidence(enum.StrEnum):
    """What a response may rest on. Each kind names what is attacked, and so what may act."""

    # One failed sign-in (or a refused one). The throttle's back-off answers it: no action here.
    LOGIN_FAILURE = "login_failure"
    # The account reached the throttle's limit of consecutive failures: guessing at it.
    ACCOUNT_GUESSING = "account_guessing"
    # From one address: failures across more account names, or more failures, than a busy ward
    # ever makes (LOGIN_ADDRESS_MAX_USERNAMES / LOGIN_ADDRESS_MAX_FAILURES).
    ADDRESS_SPRAYING = "address_spraying"
    # From one address: names that do not exist, faster than a person types them.
    UNKNOWN_NAMES = "unknown_names"
    # From one address: replayed, forged or tampered login packets beyond the limit.
    FORGED_PACKETS = "forged_packets"
    # A single refused login packet (an old tab, a network hiccup): watched only.
    PACKET_REJECTED = "packet_rejected"
    # A sign-in that succeeded after failures (perhaps a guessed password).
    SUSPICIOUS_LOGIN = "suspicious_login"
    # Denied requests by a signed-in account (privilege probing).
    ACCESS_PROBING = "access_probing"
    # One session seen from two clients: a stolen session cookie.
    STOLEN_SESSION = "stolen_session"
    # Unusual reads or writes of records by an account (scraping).
    RECORD_SCRAPING = "record_scraping"
    # Unusual prediction queries by an account.
    MODEL_QUERIES = "model_queries"
    # The diagnosis model's extraction guard cut a client off: the model may be copied.
    EXTRACTION_CUT_OFF = "extraction_cut_off"
    # An upload whose content is not what it claims.
    BAD_UPLOAD = "bad_upload"
    # An unusual key operation by an account.
    KEY_ANOMALY = "key_anomaly"
    # Host load: implicates nobody.
    HOST_LOAD = "host_load"
    # An integrity failure on stored data: the ciphertext at rest was altered.
    TAMPERED_DATA = "tampered_data"


_SESSION_ACTIONS = frozenset({ActionKind.STEP_UP, ActionKind.BLOCK_SESSION})
_ACCOUNT_ACTIONS = frozenset({ActionKind.REVOKE_SESSIONS, ActionKind.SUSPEND_ACCOUNT})
_EXPOSURE_ACTIONS = frozenset({ActionKind.ROTATE_KEYS, ActionKind.RAISE_FLOOR})

# Which responses each kind of evidence may cause (issue 12, "Responses in proportion to the
# evidence"). Read it as the rule: nothing outside a row happens because of that evidence,
# however high the risk.
PERMITTED_BY_FINDING: Mapping[Evidence, frozenset[ActionKind]] = {
    Evidence.LOGIN_FAILURE: frozenset(),
    Evidence.ACCOUNT_GUESSING: _ACCOUNT_ACTIONS,
    Evidence.ADDRESS_SPRAYING: frozenset({ActionKind.THROTTLE_ADDRESS}),
    Evidence.UNKNOWN_NAMES: frozenset({ActionKind.THROTTLE_ADDRESS}),
    Evidence.FORGED_PACKETS: frozenset({ActionKind.THROTTLE_ADDRESS}),
    Evidence.PACKET_REJECTED: frozenset(),
    Evidence.SUSPICIOUS_LOGIN: _SESSION_ACTIONS,
    Evidence.ACCESS_PROBING: _SESSION_ACTIONS | _ACCOUNT_ACTIONS,
    Evidence.STOLEN_SESSION: (
        frozenset({ActionKind.BLOCK_SESSION, ActionKind.REVOKE_SESSIONS})
        | {ActionKind.THROTTLE_ADDRESS}
        | _EXPOSURE_ACTIONS
    ),
    Evidence.RECORD_SCRAPING: _SESSION_ACTIONS | _ACCOUNT_ACTIONS,
    Evidence.MODEL_QUERIES: _SESSION_ACTIONS | _ACCOUNT_ACTIONS,
    Evidence.EXTRACTION_CUT_OFF: _SESSION_ACTIONS | _ACCOUNT_ACTIONS | _EXPOSURE_ACTIONS,
    Evidence.BAD_UPLOAD: _SESSION_ACTIONS,
    Evidence.KEY_ANOMALY: _SESSION_ACTIONS | _ACCOUNT_ACTIONS,
    Evidence.HOST_LOAD: frozenset(),
    Evidence.TAMPERED_DATA: _EXPOSURE_ACTIONS,
}

# The evidence an event carries by itself (the weakest reading of it: counts that cross a
# limit come from whoever keeps them, as explicit findings).
EVIDENCE_OF_KIND: Mapping[EventKind, Evidence] = {
    EventKind.LOGIN_FAILURE: Evidence.LOGIN_FAILURE,
    EventKind.LOGIN_SUCCESS: Evidence.SUSPICIOUS_LOGIN,
    EventKind.PACKET_REJECTED: Evidence.PACKET_REJECTED,
    EventKind.ACCESS_DENIED: Evidence.ACCESS_PROBING,
    EventKind.PHI_READ: Evidence.RECORD_SCRAPING,
    EventKind.PHI_WRITE: Evidence.RECORD_SCRAPING,
    EventKind.UPLOAD: Evidence.BAD_UPLOAD,
    EventKind.SIGNATURE_FAILURE: Evidence.TAMPERED_DATA,
    EventKind.DECRYPTION_FAILURE: Evidence.TAMPERED_DATA,
    EventKind.PREDICTION: Evidence.MODEL_QUERIES,
    EventKind.KEY_OPERATION: Evidence.KEY_ANOMALY,
    EventKind.HOST: Evidence.HOST_LOAD,
}

# The same table by event kind (what an event with no further findings may cause).
PERMITTED_BY_KIND: Mapping[EventKind, frozenset[ActionKind]] = {
    kind: PERMITTED_BY_FINDING[evidence] for kind, evidence in EVIDENCE_OF_KIND.items()
}

# Features a scorer reports for one session seen from a second client (baseline.py).
STOLEN_SESSION_FEATURES = frozenset({"session_clients"})


@dataclass(frozen=True)
class Finding:
    """One piece of evidence: what kind, about whom (an address, an account, a patient), and a
    short note for people (never PHI)."""

    evidence: Evidence
    subject: str = ""
    detail: str = ""
    # Counted since the subject was last handled by an officer (a counter the officer's lift
    # reset): it may act on a handled subject again. What an event carries itself is not.
    fresh: bool = False

    @property
    def permits(self) -> frozenset[ActionKind]:
        return PERMITTED_BY_FINDING[self.evidence]


def infer_findings(assessment: Assessment, event: Event) -> tuple[Finding, ...]:
    """The evidence an event carries by itself (used when the caller passes none)."""
    if event.kind in AT_REST_KINDS and not event.stored_data:
        # A failure on *input* (an upload, a packet) says nothing about stored data.
        return (Finding(Evidence.BAD_UPLOAD, event.address),)
    evidence = EVIDENCE_OF_KIND.get(event.kind, Evidence.HOST_LOAD)
    found = [Finding(evidence, event.actor or event.address)]
    if STOLEN_SESSION_FEATURES & set(assessment.features) and event.session:
        found.append(Finding(Evidence.STOLEN_SESSION, event.actor, "session seen from two clients"))
    return tuple(found)


def permitted(findings: Iterable[Finding]) -> frozenset[ActionKind]:
    """The responses a set of findings may cause together."""
    allowed: frozenset[ActionKind] = frozenset()
    for finding in findings:
        allowed |= finding.permits
    return allowed


def level_cap(findings: Iterable[Finding]) -> Level:
    """The highest level the findings may reach (NONE, "observe": no response at all)."""
    return max((NATURAL_LEVEL[kind] for kind in permitted(findings)), default=Level.NONE)


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
    # Subjects whose evidence an officer has handled ("address:<ip>", "account:<name>",
    # "floor"): left alone unless a finding names them afresh.
    handled: frozenset[str] = frozenset()


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

    @property
    def purpose(self) -> str:
        """What the action is for, in words for the person it affects and the officer."""
        return PURPOSES[self.kind]

    @property
    def duration(self) -> str:
        """How long it lasts."""
        if self.seconds:
            return f"{_span(self.seconds)}, then it ends by itself"
        return LASTING[self.kind]

    @property
    def who_lifts(self) -> str:
        """Who may end it, and how (the officer's command line works when the web does not)."""
        return lifts(self.kind, self.target, self.seconds)


PURPOSES: Mapping[ActionKind, str] = {
    ActionKind.STEP_UP: "make sure the person in this session is still its owner",
    ActionKind.BLOCK_SESSION: "end a session that is being misused",
    ActionKind.THROTTLE_ADDRESS: "stop an attack coming from this address",
    ActionKind.SUSPEND_ACCOUNT: "protect an account whose password is being guessed or misused",
    ActionKind.REVOKE_SESSIONS: "end every session of an account that may be in the wrong hands",
    ActionKind.ROTATE_KEYS: "stop exposed data keys from opening this patient's new data",
    ActionKind.RAISE_FLOOR: "encrypt everything at least this strongly while data may be exposed",
}

LASTING: Mapping[ActionKind, str] = {
    ActionKind.STEP_UP: "until the owner gives a second-factor code",
    ActionKind.BLOCK_SESSION: "once: the owner signs in again",
    ActionKind.THROTTLE_ADDRESS: "until lifted",
    ActionKind.SUSPEND_ACCOUNT: "until lifted",
    ActionKind.REVOKE_SESSIONS: "once: the owner signs in again",
    ActionKind.ROTATE_KEYS: "for good (old key versions still decrypt old data)",
    ActionKind.RAISE_FLOOR: "until lifted",
}


def lifts(kind: ActionKind, target: str, seconds: int = 0) -> str:
    """Who may lift an action of ``kind`` on ``target``."""
    expires = f"expires by itself after {_span(seconds)}; " if seconds else ""
    if kind is ActionKind.THROTTLE_ADDRESS:
        return (
            f"{expires}the security officer may lift it sooner with "
            f"`carevault security unblock {target}` or the dashboard"
        )
    if kind is ActionKind.SUSPEND_ACCOUNT:
        return (
            "the owner, with their second factor or a password reset; the security officer "
            f"with `carevault security lift {target}` or the dashboard"
        )
    if kind is ActionKind.RAISE_FLOOR:
        return (
            f"{expires}the security officer may lower it sooner with "
            "`carevault security lift-floor` or the dashboard"
        )
    if kind is ActionKind.STEP_UP:
        return "the owner, with a second-factor code"
    return "nobody needs to: it is done once (the owner signs in again)"


def _span(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def handled_key(action: ResponseAction) -> str:
    """The subject an officer's "handled" mark on it would name ("" for one-off actions)."""
    if action.kind is ActionKind.THROTTLE_ADDRESS:
        return f"address:{action.target}"
    if action.kind in (ActionKind.SUSPEND_ACCOUNT, ActionKind.REVOKE_SESSIONS):
        return f"account:{action.target}"
    if action.kind is ActionKind.RAISE_FLOOR:
        return "floor"
    return ""


def is_at_rest(event: Event) -> bool:
    return event.kind in AT_REST_KINDS and event.stored_data


def explain(
    assessment: Assessment,
    event: Event,
    level: Level,
    *,
    limit: int = 5,
    findings: Sequence[Finding] = (),
) -> str:
    """One paragraph for people: the risk and its level, the event, the evidence, and what
    drove the score (rules, then the strongest detectors, then the features that pushed it
    most)."""
    who = f" by {event.actor}" if event.actor else ""
    where = f" from {event.address}" if event.address else ""
    parts = [f"risk {assessment.risk:.2f} ({level.label}) on {event.kind.value}{who}{where}"]
    if findings:
        parts.append("evidence: " + ", ".join(_finding_text(f) for f in findings))
    if assessment.rules:
        parts.append("rules: " + ", ".join(assessment.rules))
    if assessment.detectors:
        top = sorted(assessment.detectors.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        parts.append("detectors: " + ", ".join(f"{name} {value:.2f}" for name, value in top))
    if assessment.features:
        shown = list(assessment.features.items())[:limit]
        parts.append("features: " + ", ".join(f"{name}={_number(value)}" for name, value in shown))
    return "; ".join(parts)


def _finding_text(finding: Finding) -> str:
    return (
        f"{finding.evidence.value} ({finding.detail})" if finding.detail else finding.evidence.value
    )


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

    def capped_level(
        self, assessment: Assessment, event: Event, findings: Sequence[Finding] = ()
    ) -> Level:
        """The level the risk reaches, no higher than its evidence permits (what an incident
        opened by this event is rated at)."""
        return min(
            self.level(assessment.risk), level_cap(findings or infer_findings(assessment, event))
        )

    def plan(
        self,
        assessment: Assessment,
        event: Event,
        state: ResponseState,
        findings: Sequence[Finding] = (),
    ) -> list[ResponseAction]:
        """The actions the risk's level takes against the event's subjects, keeping only those
        the evidence permits (``findings``; when none are given, :func:`infer_findings`)."""
        level = self.level(assessment.risk)
        if level is Level.NONE:
            return []
        evidence = tuple(findings) or infer_findings(assessment, event)
        allowed = permitted(evidence)
        if not allowed:
            return []
        explanation = explain(assessment, event, level, findings=evidence)
        # Evidence the caller found afresh (counts reset when an officer handled the subject).
        fresh = {f.subject for f in evidence if f.fresh and f.subject}
        actions = [
            action
            for action in self.plan_level(level, Subjects.of(event, state), state, explanation)
            if action.kind in allowed
            and not (handled_key(action) in state.handled and action.target not in fresh)
        ]
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
