"""The security layer on the request path: audited action -> event -> score -> incident ->
graduated response.

:func:`observe` is registered with the audit log (apps.py) and sees every entry right after it
is written. It must never break the action being audited: everything it does runs in a savepoint
of its own inside a ``try``, so a failure (a scorer that raises, a database error) is logged,
counted on the dashboard's detector health, rolled back, and the action goes on. It never sees
its own writes: responses and officer decisions are audited as ``security.*`` (not events), and
a context flag stops any entry written while it runs from being observed again.

**Scoring on the request path.** Every event is scored synchronously by default: the baseline
costs one to three indexed COUNT queries, and the trained ensemble is budgeted at p99 <= 1 ms
per event (issue 5). Each ``assess()`` is timed; if the loaded scorer turns out slower than
``SECURITY_SYNC_BUDGET_MS`` (p95 of the last 512 calls), events of the kinds that do not need an
immediate answer (PHI reads and writes, predictions, key operations, host samples) are stored
unscored and scored in one batch by :func:`score_pending` (the dashboard's risk timeline calls
it on every poll). Kinds that gate an attacker (logins, rejected packets, denials, uploads,
integrity failures) are always scored on the request, because their answer (a step-up, an
address block) must come before the next attempt.

**Rules over shared counts.** The scorer's feature windows live in one process; the server
runs several workers. Events of the kinds that gate an attacker are also checked against
``rules.SHARED_RULES`` with counts every worker shares (:func:`with_shared_rules`: the stored
events and the login throttle), whatever scorer is loaded: a run of denials, an address spray,
runs of refused packets, uploads or paused sign-ins (the throttle's one summary event per run),
the throttle's limits. A rule that fires sets a floor under the risk.

**Incidents.** An event whose risk reaches the incident threshold (the step-up threshold unless
configured) joins the active incident that shares one of its subjects (its address, its account,
the patient whose stored data failed, the host), or opens one. An incident stays active until an
officer closes it or ``SECURITY_INCIDENT_IDLE_MINUTES`` pass without a new event.

**Responses.** :class:`~carevault.security.response.ResponsePolicy` plans, with what is already
in force looked up here (:func:`state_for`) and the evidence behind the event
(:func:`findings_for`: what the event carries, plus the counts the login throttle keeps, the
account's run of failures, the extraction guard's cut-offs), and
:class:`~.sink.WebResponseSink` carries out. The evidence caps the plan (issue 12): failed
sign-ins never block an address, raise the floor or rotate keys; an incident is rated no higher
than its evidence permits. Subjects an officer has unblocked or lifted are marked handled
(login/handled.py) and left alone unless fresh evidence names them.
Each action becomes a :class:`~.models.ResponseRecord` and a ``security.response`` audit entry
with its explanation (which event, which detectors, which features).
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from carevault.security import rules as hard_rules
from carevault.security.assessment import Assessment
from carevault.security.baseline import (
    BaselineLimits,
    BaselineScorer,
    LoadedScorer,
    latest_model_version,
    load_scorer_or_baseline,
)
from carevault.security.events import AttackClass, Event, EventKind
from carevault.security.response import (
    ActionKind,
    Evidence,
    Executed,
    Finding,
    Level,
    ResponseConfig,
    ResponsePolicy,
    ResponseState,
    Subjects,
    Thresholds,
    execute,
    explain,
    infer_findings,
    is_at_rest,
)
from carevault.security.telemetry import HostSample, HostSampler, LatencyWindow
from carevault.web.accounts.models import User
from carevault.web.audit.log import Outcome, record
from carevault.web.audit.models import AuditEntry
from carevault.web.login import factor_state, handled, throttle

from . import context
from . import state as security_state
from .history import DbHistory
from .models import (
    ACTIVE_STATUSES,
    Incident,
    IncidentStatus,
    IncidentSubject,
    ResponseRecord,
    ResponseStatus,
    SecurityEvent,
)
from .observed import Observed, observe_entry
from .sink import WebResponseSink

logger = logging.getLogger("carevault.security")

# Kinds whose answer must come before the attacker's next attempt: always scored on the request.
IMMEDIATE_KINDS = frozenset(
    {
        EventKind.LOGIN_SUCCESS,
        EventKind.LOGIN_FAILURE,
        EventKind.PACKET_REJECTED,
        EventKind.ACCESS_DENIED,
        EventKind.UPLOAD,
        EventKind.SIGNATURE_FAILURE,
        EventKind.DECRYPTION_FAILURE,
    }
)
# Event fields kept in SecurityEvent.payload (the others have columns).
_PAYLOAD_FIELDS = (
    "rtt_ms",
    "upload_bytes",
    "declared_type",
    "sniffed_type",
    "suite_id",
    "key_bytes",
    "header_ok",
    "stored_data",
    "cpu",
    "net_mbps",
    "latency_ms",
    "refused",
)
PENDING_BATCH = 200

_busy: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "carevault_security_busy", default=False
)


# -- configuration (read from settings on every use: tests and operators may change it) -----------


def thresholds() -> Thresholds:
    return Thresholds(*settings.SECURITY_RESPONSE_THRESHOLDS)


def response_config() -> ResponseConfig:
    return ResponseConfig(
        thresholds=thresholds(),
        address_block_seconds=int(settings.LOGIN_ADDRESS_BLOCK_SECONDS),
        floor_suite=str(settings.SECURITY_FLOOR_SUITE),
        floor_seconds=int(settings.SECURITY_FLOOR_HOURS) * 3600,
    )


def policy() -> ResponsePolicy:
    return ResponsePolicy(response_config())


def incident_threshold() -> float:
    configured = settings.SECURITY_INCIDENT_THRESHOLD
    return float(configured) if configured is not None else thresholds().step_up


def baseline_limits() -> BaselineLimits:
    """The login throttle's own limits, so the fallback agrees with it (baseline.py)."""
    return BaselineLimits(
        window_seconds=int(settings.LOGIN_ADDRESS_WINDOW_SECONDS),
        backoff_after=int(settings.LOGIN_BACKOFF_AFTER),
        account_failures=int(settings.LOGIN_SUSPEND_AFTER),
        address_failures=int(settings.LOGIN_ADDRESS_MAX_FAILURES),
        address_accounts=int(settings.LOGIN_ADDRESS_MAX_USERNAMES),
        access_denials=int(settings.SECURITY_PROBE_DENIALS),
        distinct_patients=int(settings.SECURITY_SCRAPING_PATIENTS),
    )


# -- the loaded scorer and its health --------------------------------------------------------------


@dataclass
class Runtime:
    loaded: LoadedScorer
    baseline: BaselineScorer
    loaded_at: float = field(default_factory=time.time)
    timings: deque[float] = field(default_factory=lambda: deque(maxlen=512))
    scored: int = 0
    errors: int = 0
    last_error: str = ""
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    sampler: HostSampler | None = None
    last_host: HostSample | None = None
    # Events this process stored unscored since its last batch, and when that batch ran.
    deferred: int = 0
    last_batch: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record_timing(self, ms: float) -> None:
        with self.lock:
            self.timings.append(ms)
            self.scored += 1

    def record_error(self, exc: BaseException) -> None:
        with self.lock:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    def percentile_ms(self, q: float) -> float:
        with self.lock:
            values = sorted(self.timings)
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(q * len(values)))]

    def slow(self) -> bool:
        with self.lock:
            enough = len(self.timings) >= 50
        return enough and self.percentile_ms(0.95) > float(settings.SECURITY_SYNC_BUDGET_MS)

    def health(self) -> dict[str, Any]:
        return {
            **self.loaded.as_dict(),
            "loaded_at": dt.datetime.fromtimestamp(self.loaded_at, tz=dt.UTC),
            "scored": self.scored,
            "p50_ms": round(self.percentile_ms(0.5), 3),
            "p95_ms": round(self.percentile_ms(0.95), 3),
            "budget_ms": float(settings.SECURITY_SYNC_BUDGET_MS),
            "deferring": self.slow(),
            "errors": self.errors,
            "last_error": self.last_error,
        }


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()
# The newest sealed model version in the data directory when the runtime was built, and when
# that was last looked at: `carevault security train` in another process seals a new version,
# and every worker picks it up within SECURITY_MODEL_CHECK_SECONDS without a restart.
_model_seen: int = 0
_model_checked: float = 0.0


def runtime() -> Runtime:
    """The process's scorer: the trained sealed model when the data directory has one, else
    the baseline. Loaded once per process, and again when a newer model is sealed."""
    global _runtime, _model_seen, _model_checked
    with _runtime_lock:
        now = time.monotonic()
        if _runtime is not None and now - _model_checked >= settings.SECURITY_MODEL_CHECK_SECONDS:
            _model_checked = now
            newest = latest_model_version(Path(settings.DATA_DIR))
            if newest != _model_seen:
                logger.info("security scorer: a new sealed model (v%s) was found", newest)
                _runtime = None
        if _runtime is None:
            _model_seen = latest_model_version(Path(settings.DATA_DIR))
            _model_checked = now
            baseline = BaselineScorer(baseline_limits(), DbHistory())
            loaded = load_scorer_or_baseline(Path(settings.DATA_DIR), baseline)
            _runtime = Runtime(loaded=loaded, baseline=baseline)
            logger.info("security scorer: %s %s (%s)", loaded.kind, loaded.name, loaded.note)
        return _runtime


def reset_runtime() -> None:
    global _runtime
    with _runtime_lock:
        _runtime = None


# -- observing -------------------------------------------------------------------------------------


def observe(entry: AuditEntry, request: HttpRequest | None) -> None:
    """The audit log's observer (never raises; see the module docstring)."""
    if _busy.get() or not settings.SECURITY_EVENTS:
        return
    token = _busy.set(True)
    try:
        with transaction.atomic():
            observed = observe_entry(entry, request or context.current_request())
            if observed is not None:
                process(observed)
    except Exception as exc:
        logger.exception(
            "the security layer failed on audit entry %s (%s)", entry.seq, entry.action
        )
        _note_error(exc)
    finally:
        _busy.reset(token)


def observe_event(event: Event) -> SecurityEvent | None:
    """An event that is not an audit entry (host samples). Never raises."""
    if _busy.get() or not settings.SECURITY_EVENTS:
        return None
    token = _busy.set(True)
    try:
        with transaction.atomic():
            return process(Observed(event, 0, None, None, False))
    except Exception as exc:
        logger.exception("the security layer failed on a %s event", event.kind.value)
        _note_error(exc)
        return None
    finally:
        _busy.reset(token)


def _note_error(exc: BaseException) -> None:
    try:
        runtime().record_error(exc)
    except Exception:  # the runtime itself could not be built: already logged
        logger.debug("no runtime to count the error in")


def process(observed: Observed) -> SecurityEvent:
    """Score, store, attach to an incident and respond (inside the caller's savepoint)."""
    rt = runtime()
    event = observed.event
    if event.kind not in IMMEDIATE_KINDS and rt.slow():
        rt.deferred += 1
        return _store(observed, None, 0.0, rt)
    try:
        assessment, ms = _assess(rt, event)
    except Exception as exc:
        # Kept unscored (not lost): score_pending() tries again once the scorer works.
        logger.exception("the risk scorer failed on a %s event", event.kind.value)
        rt.record_error(exc)
        rt.deferred += 1
        return _store(observed, None, 0.0, rt)
    assessment = with_shared_rules(observed, assessment)
    row = _store(observed, assessment, ms, rt)
    _after_scoring(row, observed, assessment)
    return row


def _assess(rt: Runtime, event: Event) -> tuple[Assessment, float]:
    if rt.loaded.scorer is rt.baseline:
        rt.baseline.limits = baseline_limits()
    started = time.perf_counter()
    assessment = rt.loaded.scorer.assess(event)
    ms = (time.perf_counter() - started) * 1000
    rt.record_timing(ms)
    risk = float(assessment.risk)
    if not 0.0 <= risk <= 1.0:  # also catches NaN
        raise ValueError(f"the scorer returned a risk outside [0, 1]: {risk!r}")
    return assessment, ms


def _store(
    observed: Observed, assessment: Assessment | None, ms: float, rt: Runtime
) -> SecurityEvent:
    event = observed.event
    level = policy().level(assessment.risk) if assessment is not None else Level.NONE
    return SecurityEvent.objects.create(
        at=dt.datetime.fromtimestamp(event.at, tz=dt.UTC),
        kind=event.kind.value,
        actor=event.actor[:150],
        role=event.role[:16],
        address=event.address[:64],
        network=event.network[:64],
        client=event.client[:64],
        session=event.session[:64],
        outcome=event.outcome[:16],
        records=max(0, event.records),
        patient=event.patients[0] if len(event.patients) == 1 else "",
        patients=list(event.patients),
        payload={name: getattr(event, name) for name in _PAYLOAD_FIELDS},
        audit_seq=observed.entry_seq or None,
        risk=assessment.risk if assessment is not None else None,
        level=int(level),
        detectors=dict(assessment.detectors) if assessment is not None else {},
        features=dict(assessment.features) if assessment is not None else {},
        rules=list(assessment.rules) if assessment is not None else [],
        scorer=f"{rt.loaded.name} {rt.loaded.version}".strip()[:64],
        score_ms=round(ms, 4) if assessment is not None else None,
    )


def event_of(row: SecurityEvent) -> Event:
    """The stored event, rebuilt (batch scoring, retraining)."""
    payload = row.payload if isinstance(row.payload, dict) else {}
    known = {name: payload[name] for name in _PAYLOAD_FIELDS if name in payload}
    return Event(
        at=row.at.timestamp(),
        kind=EventKind(row.kind),
        actor=row.actor,
        role=row.role,
        address=row.address,
        network=row.network,
        client=row.client,
        session=row.session,
        outcome=row.outcome,
        records=row.records,
        label=AttackClass.BENIGN,
        patients=tuple(str(p) for p in row.patients),
        **known,
    )


def score_pending(limit: int = PENDING_BATCH) -> int:
    """Score events stored unscored (deferred, or the scorer failed); returns how many. Stops at
    the first failure (a broken scorer is not retried on every row)."""
    if _busy.get():
        return 0
    done = 0
    token = _busy.set(True)
    try:
        rt = runtime()
        rows = list(SecurityEvent.objects.filter(risk__isnull=True).order_by("at", "pk")[:limit])
        for row in rows:
            with transaction.atomic():
                event = event_of(row)
                user = User.objects.filter(username=event.actor).first() if event.actor else None
                assessment, ms = _assess(rt, event)
                action = ""
                if row.audit_seq and event.kind in SHARED_KINDS:
                    found = AuditEntry.objects.filter(seq=row.audit_seq)
                    action = str(found.values_list("action", flat=True).first() or "")
                observed = Observed(event, row.audit_seq or 0, user, None, False, action)
                assessment = with_shared_rules(observed, assessment)
                row.risk = assessment.risk
                row.level = int(policy().level(assessment.risk))
                row.detectors = dict(assessment.detectors)
                row.features = dict(assessment.features)
                row.rules = list(assessment.rules)
                row.score_ms = round(ms, 4)
                row.save(
                    update_fields=["risk", "level", "detectors", "features", "rules", "score_ms"]
                )
                _after_scoring(row, observed, assessment)
            done += 1
    except Exception as exc:
        logger.exception("batch scoring stopped")
        _note_error(exc)
    finally:
        _busy.reset(token)
    return done


# -- rules over the counts every worker shares ----------------------------------------------------

# Kinds that gate an attacker and that SHARED_RULES read counts for.
SHARED_KINDS = frozenset(
    {
        EventKind.LOGIN_FAILURE,
        EventKind.PACKET_REJECTED,
        EventKind.ACCESS_DENIED,
        EventKind.UPLOAD,
        EventKind.PHI_WRITE,  # break-the-glass grants only (shared_counts)
    }
)
_LOGIN_KINDS = (EventKind.LOGIN_FAILURE.value, EventKind.LOGIN_SUCCESS.value)
# The most distinct names read for one address (the rule's limit is far below).
_DISTINCT_CAP = 100


def shared_counts(observed: Observed) -> dict[str, float]:
    """The counts :data:`~carevault.security.rules.SHARED_RULES` read, over the stored events
    (which every worker writes) and the login throttle (the shared store), this event
    included. One indexed query each, only for the kinds that need them."""
    event, history = observed.event, DbHistory()
    counts: dict[str, float] = {}
    at = event.at
    if event.kind is EventKind.PHI_WRITE:
        if observed.action == "breakglass.open" and event.actor:
            # Audited before it is observed: the count includes this grant.
            counts["breakglass_actor_1h"] = AuditEntry.objects.filter(
                action="breakglass.open",
                actor=event.actor,
                at__gte=dt.datetime.fromtimestamp(at - 3600, tz=dt.UTC),
            ).count()
        return counts
    if event.kind is EventKind.UPLOAD:
        if event.actor and event.outcome != "ok":
            refused = history.count(
                {EventKind.UPLOAD}, at - 600, actor=event.actor, outcome=event.outcome
            )
            counts["rejected_uploads_actor_10m"] = refused + 1
        return counts
    if event.kind is EventKind.ACCESS_DENIED:
        if event.actor:
            denied = history.count({EventKind.ACCESS_DENIED}, at - 600, actor=event.actor)
            counts["denied_actor_10m"] = denied + 1
        return counts
    if event.kind is EventKind.LOGIN_FAILURE:
        failure = {EventKind.LOGIN_FAILURE}
        if event.address:
            counts["fail_address_1h"] = history.count(failure, at - 3600, address=event.address) + 1
            names = set(
                SecurityEvent.objects.filter(
                    kind__in=_LOGIN_KINDS,
                    address=event.address,
                    at__gte=dt.datetime.fromtimestamp(at - 600, tz=dt.UTC),
                )
                .exclude(actor="")
                .values_list("actor", flat=True)
                .distinct()[:_DISTINCT_CAP]
            )
            if event.actor:
                names.add(event.actor)
            counts["accounts_address_10m"] = len(names)
    if event.kind is EventKind.PACKET_REJECTED and event.address:
        rejected = history.count({EventKind.PACKET_REJECTED}, at - 600, address=event.address)
        counts["rejects_address_10m"] = rejected + 1
    if throttle_limit_reached(observed):
        counts["throttle_limit"] = 1
    return counts


def throttle_limit_reached(observed: Observed) -> bool:
    """Whether the login throttle's evidence of an attack is in force for the event: its
    address at one of the address limits, or the account at its suspension limit (counting
    this failure, which is audited before the throttle counts it)."""
    event, user = observed.event, observed.user
    if event.address and throttle.address_evidence(event.address):
        return True
    if event.kind is EventKind.LOGIN_FAILURE and user is not None:
        stored = User.objects.filter(pk=user.pk).values_list("consecutive_failures", flat=True)
        return int(stored.first() or 0) + 1 >= int(settings.LOGIN_SUSPEND_AFTER)
    return False


def with_shared_rules(observed: Observed, assessment: Assessment) -> Assessment:
    """The assessment, with :data:`~carevault.security.rules.SHARED_RULES` checked on counts
    every worker shares (whatever scorer is loaded): a rule that fires sets a floor under the
    risk and is named with the others; the counts it read join the reported features."""
    event = observed.event
    if event.kind not in SHARED_KINDS:
        return assessment
    counts = shared_counts(observed)
    fired = hard_rules.check(event, hard_rules.SHARED_RULES, hard_rules.Counts(counts))
    if not fired.fired:
        return assessment
    features = dict(assessment.features)
    for name, value in counts.items():
        if value and value > features.get(name, 0.0):
            features[name] = float(value)
    return dataclasses.replace(
        assessment,
        risk=max(float(assessment.risk), fired.floor),
        features=features,
        rules=tuple(dict.fromkeys((*assessment.rules, *fired.fired))),
    )


# -- incidents -------------------------------------------------------------------------------------


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
    if event.kind is EventKind.PREDICTION and user is not None:
        from carevault.web.diagnosis.models import ClientCutOff

        if ClientCutOff.objects.filter(user=user, lifted_at__isnull=True).exists():
            found.append(
                Finding(
                    Evidence.EXTRACTION_CUT_OFF,
                    user.username,
                    "the extraction guard cut off",
                    fresh=True,
                )
            )
    return tuple(found)


def _after_scoring(row: SecurityEvent, observed: Observed, assessment: Assessment) -> None:
    if assessment.risk < incident_threshold():
        return
    current = policy()
    findings = findings_for(observed, assessment)
    level = current.capped_level(assessment, observed.event, findings)
    incident = _attach(row, observed.event, assessment, level)
    state = state_for(observed, incident)
    actions = current.plan(assessment, observed.event, state, findings)
    if not actions:
        return
    sink = WebResponseSink(incident, live_request=observed.request)
    for result in execute(actions, sink):
        record_response(incident, row, result, request=observed.request, ordered_by=None)


def _attach(row: SecurityEvent, event: Event, assessment: Assessment, level: Level) -> Incident:
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


def _done_targets(incident: Incident, action: ActionKind) -> frozenset[str]:
    return frozenset(
        incident.responses.filter(
            action=action.value, status__in=[ResponseStatus.DONE, ResponseStatus.IN_FORCE]
        ).values_list("target", flat=True)
    )


def state_for(observed: Observed, incident: Incident) -> ResponseState:
    """What is in force already for this event's subjects."""
    event, user, request = observed.event, observed.user, observed.request
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
        step_up_pending=bool(request is not None and factor_state.step_up_demanded(request)),
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
        revoked_accounts=_done_targets(incident, ActionKind.REVOKE_SESSIONS),
        touched_patients=frozenset(touched),
        rotated_patients=_done_targets(incident, ActionKind.ROTATE_KEYS),
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
    request: HttpRequest | None,
    ordered_by: User | None,
) -> ResponseRecord:
    """Keep and audit one executed action (ok or not)."""
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
        request=request,
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


# -- the end of every request (middleware) ---------------------------------------------------------


BATCH_EVERY_SECONDS = 10.0


def after_request(elapsed_ms: float) -> None:
    """Report the request's latency; take a host sample when one is due; score a batch of
    deferred events when this process deferred some (at most every BATCH_EVERY_SECONDS, after
    the response is built). Never raises."""
    if not settings.SECURITY_EVENTS:
        return
    try:
        rt = runtime()
        if rt.deferred and time.monotonic() - rt.last_batch >= BATCH_EVERY_SECONDS:
            rt.deferred, rt.last_batch = 0, time.monotonic()
            score_pending()
    except Exception:
        logger.exception("batch scoring failed")
    from carevault.web.vault import reencrypt

    reencrypt.resume_if_abandoned()
    interval = int(settings.SECURITY_TELEMETRY_SECONDS)
    if interval <= 0:
        return
    try:
        rt = runtime()
        rt.latency.add(elapsed_ms)
        with rt.lock:
            if rt.sampler is None:
                rt.sampler = HostSampler(rt.latency)
            sampler = rt.sampler
        sample = sampler.take_if_due(interval)
        if sample is not None:
            rt.last_host = sample
            observe_event(sample.to_event())
    except Exception:
        logger.exception("host telemetry failed")


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
        revoked_accounts=_done_targets(incident, ActionKind.REVOKE_SESSIONS),
        rotated_patients=_done_targets(incident, ActionKind.ROTATE_KEYS),
        floor_raised=security_state.current_floor() is not None,
    )
