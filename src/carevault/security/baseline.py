"""The rules-based fallback scorer, and the loader that prefers the trained ensemble.

:class:`BaselineScorer` is what CareVault scores with when no trained, sealed model is in the
data directory (a fresh install, a model that failed its seal check). It is **not** the anomaly
ensemble and does not pretend to be: its one "detector" is called ``baseline``, its features are
plain counts over a sliding window, and the dashboard says which scorer is loaded.

What it counts (over ``window_seconds``, default 15 min; "before" means events before this one):

* **account failures**: failed password / second-factor checks of the account named. Below the
  login throttle's suspension limit the risk stays under "contain": the throttle's back-off
  already slows the guesser, and the account named is the *victim*. From the limit on, the risk
  is "suspend": the throttle has suspended the account and this adds what it does not do
  (revoking the account's sessions, in case the guesser is already in).
* **address failures** and **accounts per address**: failed logins from the address, and how
  many different account names they tried (brute force, spraying, stuffing from one source).
  Capped below "suspend": an address alone never gets an account suspended (the attempts are
  refused anyway, and a lock-out of the names an attacker types would be their weapon).
* **rejected login packets** per address (malformed, tampered, replayed packets).
* **success after failures**: a login that succeeds from an address that failed against the
  same account several times before (a guessed password) asks for step-up; after many, it is
  contained. A success from an address that failed against many accounts asks for step-up at
  half the throttle's limit of names (staff behind one clinic NAT mistype too) and is contained
  at the limit.
* **access denials** per account (or per address when anonymous): privilege probing (IDOR).
* **a session seen from a second client**: the session guard's binding refusal (a stolen
  cookie) is contained (the thief's address is blocked; the owner is not suspended).
* **distinct patients** whose full record the account opened (record scraping). List pages
  (one event naming many patients) do not count: a doctor's patient list is not scraping.
* **predictions per minute** per account (model-extraction query rates).
* **uploads** whose header does not parse, whose content is not what it claims, or whose key
  material has an impossible length.
* **host samples**: CPU, network throughput and latency far above normal. Capped at step-up
  level: a host sample implicates nobody, so it opens an incident for a person to look at.
* **hard rules**: an AEAD (decryption) or signature failure on *stored* data is tampering,
  whatever any count says: risk 1.

The limits are the login throttle's own settings where one exists (the web layer passes them),
so the fallback and the throttle never disagree about where an attack starts. Counts map to a
risk through one ramp (:func:`ramp`): half the limit is 0.4, the limit is 0.7 (contain), twice
the limit 0.85 (suspend), four times 0.95; each signal is capped where its evidence stops
implicating anyone further. The risk is the highest signal; the features reported are the
signals that fired, strongest first.

:class:`BaselineScorer` keeps its counts in a :class:`History`: :class:`MemoryHistory` (one
process: tests, offline evaluation) or the web layer's database-backed one (shared by every app
server, rolled back with the test that wrote it).
"""

from __future__ import annotations

import bisect
import importlib
import logging
import os
from collections import defaultdict, deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .assessment import Assessment, RiskScorer
from .events import Event, EventKind

logger = logging.getLogger(__name__)

BASELINE_NAME = "baseline"
HARD_RULE_AEAD_AT_REST = "aead_failure_at_rest"
HARD_RULE_SIGNATURE_AT_REST = "signature_failure_at_rest"

FAILED = "failed"
LOGIN_KINDS = frozenset({EventKind.LOGIN_FAILURE})
# Key and suite sizes an uploaded ciphertext or key may honestly carry (AES-128/192/256, X25519,
# P-256 private scalars, RSA-3072 moduli in bytes).
PLAUSIBLE_KEY_BYTES = frozenset({0, 16, 24, 32, 65, 384})


class History(Protocol):
    """The events before the one being scored (never including it)."""

    def count(
        self,
        kinds: Collection[EventKind],
        since: float,
        *,
        actor: str | None = None,
        address: str | None = None,
        outcome: str | None = None,
    ) -> int: ...

    def distinct_actors(
        self, kinds: Collection[EventKind], since: float, *, address: str, outcome: str | None
    ) -> int: ...

    def distinct_patients(self, since: float, *, actor: str) -> set[str]:
        """Patients whose full record ``actor`` opened (single-patient PHI reads)."""
        ...

    def session_clients(self, session: str, since: float) -> set[tuple[str, str]]:
        """(address, client) pairs the session was seen from."""
        ...

    def add(self, event: Event) -> None: ...


@dataclass(frozen=True)
class BaselineLimits:
    """The counts at which the baseline reaches "contain" (see :func:`ramp`)."""

    window_seconds: int = 900
    # The login throttle's settings (LOGIN_BACKOFF_AFTER, LOGIN_SUSPEND_AFTER,
    # LOGIN_ADDRESS_MAX_FAILURES, LOGIN_ADDRESS_MAX_USERNAMES).
    backoff_after: int = 5
    account_failures: int = 20
    address_failures: int = 30
    address_accounts: int = 10
    packet_rejections: int = 20
    access_denials: int = 10
    distinct_patients: int = 25
    predictions_per_minute: int = 120
    # Host samples.
    cpu: float = 0.95
    net_mbps: float = 500.0
    latency_ms: float = 2000.0

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if value <= 0:
                raise ValueError(f"baseline limit {name} must be positive, got {value}")


# (count / limit, risk): the one ramp every count goes through.
_RAMP = ((0.0, 0.0), (0.5, 0.4), (1.0, 0.7), (2.0, 0.85), (4.0, 0.95))

# Caps (see the module docstring for why each stops where it does).
CAP_ADDRESS = 0.8  # contain, never suspend
CAP_ACCOUNT_BELOW_LIMIT = 0.65  # step-up band: the throttle's back-off does the slowing
AT_ACCOUNT_LIMIT = 0.85  # suspend: agrees with the throttle's suspension
SUCCESS_AFTER_SOME = 0.55  # step-up
SUCCESS_AFTER_MANY = 0.75  # contain
SESSION_NEW_CLIENT = 0.75  # contain
BAD_UPLOAD = 0.55  # step-up
CAP_HOST = 0.6  # an incident, no action: a host sample implicates nobody


def ramp(count: float, limit: float, cap: float = 0.95) -> float:
    """Piecewise-linear risk of ``count`` against ``limit``: 0.4 at half of it, 0.7 at it,
    0.85 at twice, 0.95 at four times; never above ``cap``."""
    if count <= 0 or limit <= 0:
        return 0.0
    x = count / limit
    xs = [p[0] for p in _RAMP]
    i = bisect.bisect_right(xs, x)
    if i >= len(_RAMP):
        value = _RAMP[-1][1]
    else:
        (x0, y0), (x1, y1) = _RAMP[i - 1], _RAMP[i]
        value = y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return round(min(value, cap), 4)


@dataclass(frozen=True)
class _Signal:
    name: str
    value: float
    risk: float


class BaselineScorer:
    """Counts and hard rules (module docstring). Implements :class:`RiskScorer`."""

    name = BASELINE_NAME
    version = "rules-1"

    def __init__(self, limits: BaselineLimits | None = None, history: History | None = None):
        self.limits = limits or BaselineLimits()
        self.history: History = history if history is not None else MemoryHistory()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "trained_at": ""}

    def assess(self, event: Event) -> Assessment:
        rules = self._rules(event)
        signals = [] if rules else [s for s in self._signals(event) if s.risk > 0]
        self.history.add(event)
        signals.sort(key=lambda s: (-s.risk, s.name))
        risk = 1.0 if rules else max((s.risk for s in signals), default=0.0)
        return Assessment(
            risk=risk,
            detectors={BASELINE_NAME: risk},
            features={s.name: s.value for s in signals[:6]},
            rules=tuple(rules),
        )

    @staticmethod
    def _rules(event: Event) -> list[str]:
        if event.stored_data and event.kind is EventKind.DECRYPTION_FAILURE:
            return [HARD_RULE_AEAD_AT_REST]
        if event.stored_data and event.kind is EventKind.SIGNATURE_FAILURE:
            return [HARD_RULE_SIGNATURE_AT_REST]
        return []

    def _signals(self, event: Event) -> Iterable[_Signal]:
        kind = event.kind
        if kind is EventKind.LOGIN_FAILURE:
            yield from self._login_failure(event)
        elif kind is EventKind.PACKET_REJECTED:
            yield self._address_count(
                event,
                {EventKind.PACKET_REJECTED},
                None,
                "packet_rejections",
                self.limits.packet_rejections,
            )
        elif kind is EventKind.LOGIN_SUCCESS:
            yield from self._login_success(event)
        elif kind is EventKind.ACCESS_DENIED:
            yield from self._denial(event)
        elif kind is EventKind.PHI_READ:
            yield from self._read(event)
        elif kind is EventKind.PREDICTION:
            yield from self._prediction(event)
        elif kind is EventKind.UPLOAD:
            yield from self._upload(event)
        elif kind is EventKind.HOST:
            yield from self._host(event)

    def _since(self, event: Event, seconds: float | None = None) -> float:
        return event.at - (self.limits.window_seconds if seconds is None else seconds)

    def _address_count(
        self,
        event: Event,
        kinds: Collection[EventKind],
        outcome: str | None,
        name: str,
        limit: int,
    ) -> _Signal:
        if not event.address:
            return _Signal(name, 0, 0.0)
        n = self.history.count(kinds, self._since(event), address=event.address, outcome=outcome)
        return _Signal(name, n, ramp(n, limit, CAP_ADDRESS))

    def _login_failure(self, event: Event) -> Iterable[_Signal]:
        limits = self.limits
        yield self._address_count(
            event, LOGIN_KINDS, FAILED, "address_failures", limits.address_failures
        )
        if event.address:
            names = self.history.distinct_actors(
                LOGIN_KINDS, self._since(event), address=event.address, outcome=FAILED
            )
            yield _Signal(
                "accounts_per_address", names, ramp(names, limits.address_accounts, CAP_ADDRESS)
            )
        if event.actor and event.outcome == FAILED:
            n = self.history.count(
                LOGIN_KINDS, self._since(event), actor=event.actor, outcome=FAILED
            )
            if n >= limits.account_failures:
                risk = max(AT_ACCOUNT_LIMIT, ramp(n, limits.account_failures))
            else:
                risk = min(ramp(n, limits.account_failures), CAP_ACCOUNT_BELOW_LIMIT)
            yield _Signal("account_failures", n, risk)

    def _login_success(self, event: Event) -> Iterable[_Signal]:
        limits = self.limits
        if not event.address:
            return
        since = self._since(event)
        if event.actor:
            tries = self.history.count(
                LOGIN_KINDS, since, actor=event.actor, address=event.address, outcome=FAILED
            )
            if tries >= 2 * limits.backoff_after:
                yield _Signal("failures_before_success", tries, SUCCESS_AFTER_MANY)
            elif tries >= limits.backoff_after:
                yield _Signal("failures_before_success", tries, SUCCESS_AFTER_SOME)
        names = self.history.distinct_actors(
            LOGIN_KINDS, since, address=event.address, outcome=FAILED
        )
        # Many staff behind one clinic NAT mistype now and then: half the throttle's limit only
        # asks for a step-up; the limit itself (a spraying source that got in) contains.
        if names >= limits.address_accounts:
            yield _Signal("accounts_failed_from_address", names, SUCCESS_AFTER_MANY)
        elif names >= max(2, limits.address_accounts // 2):
            yield _Signal("accounts_failed_from_address", names, SUCCESS_AFTER_SOME)

    def _denial(self, event: Event) -> Iterable[_Signal]:
        since = self._since(event)
        if event.actor:
            n = self.history.count({EventKind.ACCESS_DENIED}, since, actor=event.actor)
            yield _Signal("access_denials", n, ramp(n, self.limits.access_denials))
        elif event.address:
            n = self.history.count({EventKind.ACCESS_DENIED}, since, address=event.address)
            yield _Signal("access_denials", n, ramp(n, self.limits.access_denials, CAP_ADDRESS))
        if event.session:
            seen = self.history.session_clients(event.session, since)
            if seen and any(pair != (event.address, event.client) for pair in seen):
                yield _Signal(
                    "session_clients",
                    len(seen | {(event.address, event.client)}),
                    SESSION_NEW_CLIENT,
                )

    def _read(self, event: Event) -> Iterable[_Signal]:
        if not event.actor or len(event.patients) != 1:
            return
        seen = self.history.distinct_patients(self._since(event), actor=event.actor)
        n = len(seen | set(event.patients))
        yield _Signal("distinct_patients", n, ramp(n, self.limits.distinct_patients))

    def _prediction(self, event: Event) -> Iterable[_Signal]:
        if not event.actor:
            return
        n = self.history.count({EventKind.PREDICTION}, self._since(event, 60), actor=event.actor)
        yield _Signal("predictions_per_minute", n, ramp(n, self.limits.predictions_per_minute))

    @staticmethod
    def _upload(event: Event) -> Iterable[_Signal]:
        if not event.header_ok:
            yield _Signal("upload_header_invalid", 1, BAD_UPLOAD)
        if event.declared_type and event.sniffed_type and event.declared_type != event.sniffed_type:
            yield _Signal("upload_type_mismatch", 1, BAD_UPLOAD)
        if event.key_bytes not in PLAUSIBLE_KEY_BYTES:
            yield _Signal("upload_key_bytes", event.key_bytes, BAD_UPLOAD)

    def _host(self, event: Event) -> Iterable[_Signal]:
        limits = self.limits
        yield _Signal("host_cpu", round(event.cpu, 3), ramp(event.cpu, limits.cpu, CAP_HOST))
        yield _Signal(
            "host_net_mbps",
            round(event.net_mbps, 1),
            ramp(event.net_mbps, limits.net_mbps, CAP_HOST),
        )
        yield _Signal(
            "host_latency_ms",
            round(event.latency_ms, 1),
            ramp(event.latency_ms, limits.latency_ms, CAP_HOST),
        )


class MemoryHistory:
    """:class:`History` in one process's memory, indexed by actor, address and session, keeping
    ``horizon_seconds`` of events (the longest window any rule looks at)."""

    def __init__(self, horizon_seconds: float = 3600.0) -> None:
        self.horizon = horizon_seconds
        self._by: dict[tuple[str, str], deque[Event]] = defaultdict(deque)
        self._latest = 0.0

    def add(self, event: Event) -> None:
        self._latest = max(self._latest, event.at)
        for key in self._keys(event):
            queue = self._by[key]
            queue.append(event)
            while queue and queue[0].at < self._latest - self.horizon:
                queue.popleft()

    @staticmethod
    def _keys(event: Event) -> list[tuple[str, str]]:
        keys = []
        if event.actor:
            keys.append(("actor", event.actor))
        if event.address:
            keys.append(("address", event.address))
        if event.session:
            keys.append(("session", event.session))
        return keys

    def _scan(
        self, since: float, *, actor: str | None, address: str | None, session: str | None = None
    ) -> Iterable[Event]:
        if actor is not None:
            events: Iterable[Event] = self._by.get(("actor", actor), ())
        elif address is not None:
            events = self._by.get(("address", address), ())
        elif session is not None:
            events = self._by.get(("session", session), ())
        else:
            events = ()
        for event in events:
            if event.at < since:
                continue
            if address is not None and event.address != address:
                continue
            yield event

    def count(
        self,
        kinds: Collection[EventKind],
        since: float,
        *,
        actor: str | None = None,
        address: str | None = None,
        outcome: str | None = None,
    ) -> int:
        return sum(
            1
            for e in self._scan(since, actor=actor, address=address)
            if e.kind in kinds and (outcome is None or e.outcome == outcome)
        )

    def distinct_actors(
        self, kinds: Collection[EventKind], since: float, *, address: str, outcome: str | None
    ) -> int:
        return len(
            {
                e.actor
                for e in self._scan(since, actor=None, address=address)
                if e.kind in kinds and e.actor and (outcome is None or e.outcome == outcome)
            }
        )

    def distinct_patients(self, since: float, *, actor: str) -> set[str]:
        return {
            e.patients[0]
            for e in self._scan(since, actor=actor, address=None)
            if e.kind is EventKind.PHI_READ and len(e.patients) == 1
        }

    def session_clients(self, session: str, since: float) -> set[tuple[str, str]]:
        return {
            (e.address, e.client)
            for e in self._scan(since, actor=None, address=None, session=session)
        }


# -- choosing the scorer --------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedScorer:
    """The scorer in use and what the dashboard says about it."""

    scorer: RiskScorer
    kind: str  # "trained" or "baseline"
    name: str
    version: str
    trained_at: str
    note: str  # why this one (e.g. why the trained model was not used)

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "trained_at": self.trained_at,
            "note": self.note,
        }


TRAINED_MODULE = "carevault.security.scoring"
# The sealed model's name in the data directory's model store (models/<name>/v<n>/).
TRAINED_MODEL_NAME = "risk-ensemble"


def latest_model_version(data_dir: Path, name: str = TRAINED_MODEL_NAME) -> int:
    """The newest sealed version of model ``name`` (default: the trained risk model) in
    ``data_dir`` (0: none), from one directory listing: cheap enough to ask every few seconds
    whether to reload."""
    try:
        entries = os.scandir(Path(data_dir) / "models" / name)
    except OSError:
        return 0
    with entries:
        versions = [int(e.name[1:]) for e in entries if e.name[:1] == "v" and e.name[1:].isdigit()]
    return max(versions, default=0)


def load_scorer_or_baseline(data_dir: Path, baseline: RiskScorer) -> LoadedScorer:
    """The trained ensemble from the sealed model files in ``data_dir`` when there is one
    (``carevault.security.scoring.load_scorer(data_dir)``, written by ``carevault security
    train``), else ``baseline``.

    The trained loader returns a scorer, or None (or raises FileNotFoundError) when no model was
    trained into this data directory. Any other error (a model whose seal does not verify, a
    damaged file) is logged loudly and the baseline is used: a broken model must never leave
    the server unprotected, nor be trusted.
    """
    try:
        module = importlib.import_module(TRAINED_MODULE)
    except ImportError:
        return _baseline(baseline, "no trained scorer is installed (carevault.security.scoring)")
    load = getattr(module, "load_scorer", None)
    if load is None:
        return _baseline(baseline, f"{TRAINED_MODULE} has no load_scorer()")
    try:
        trained = load(data_dir)
    except FileNotFoundError:
        trained = None
    except Exception as exc:
        logger.error("the trained risk model in %s was refused: %s", data_dir, exc)
        return _baseline(baseline, f"the trained model was refused: {type(exc).__name__}: {exc}")
    if trained is None:
        return _baseline(
            baseline, "no trained model in the data directory (run: carevault security train)"
        )
    info = _describe(trained)
    return LoadedScorer(
        scorer=trained,
        kind="trained",
        name=str(info.get("name") or type(trained).__name__),
        version=str(info.get("version") or ""),
        trained_at=str(info.get("trained_at") or ""),
        note=f"sealed model from {data_dir}",
    )


def _baseline(baseline: RiskScorer, note: str) -> LoadedScorer:
    info = _describe(baseline)
    return LoadedScorer(
        scorer=baseline,
        kind="baseline",
        name=str(info.get("name") or BASELINE_NAME),
        version=str(info.get("version") or ""),
        trained_at="",
        note=note,
    )


def _describe(scorer: object) -> dict[str, Any]:
    describe = getattr(scorer, "describe", None)
    if callable(describe):
        try:
            info = describe()
        except Exception:  # a description is never worth failing over
            return {}
        return dict(info) if isinstance(info, dict) else {}
    return {
        key: getattr(scorer, key)
        for key in ("name", "version", "trained_at")
        if hasattr(scorer, key)
    }
