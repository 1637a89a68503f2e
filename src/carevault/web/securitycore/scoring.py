"""The security layer on the request path: audited action -> event -> score -> stored event,
then :func:`~.responses.respond` (incident, graduated response).

**What is synchronous, what is not** (``SECURITY_SCORING``, default ``"background"``).
Kinds that gate an attacker (logins, rejected packets, denials, uploads, integrity failures:
:data:`IMMEDIATE_KINDS`) are the hard rules that must block the request being served, so
:func:`observe_gating` scores them synchronously, inside the action's transaction: their answer
(a step-up, an ended session, an address block) is in force before the response leaves and
before the attacker's next attempt. Every other kind (PHI reads and writes, predictions, key
operations, host samples) is stored unscored — one insert, in a savepoint of the action's own
transaction when it has one — and once the action commits its id goes to the process's
background scorer (:mod:`.scorer`): a bounded queue drained by a daemon thread in the gaps
between requests, which claims the rows (:func:`claim`: no row is scored twice by several
processes, a dead scorer's claim is taken over after :func:`lease_seconds`), scores them and
responds as the request would have. The pending row is the durable queue: a full queue, a crash
or a killed worker loses nothing, because every scorer's sweep and :func:`score_pending` (the
dashboard's risk timeline on each poll, ``carevault security activity``, a periodic task) take
up whatever is still pending. The window between a read and its answer is the queue's latency:
milliseconds when idle, at most a sweep (:data:`.scorer.SWEEP_SECONDS`) for an overflow, longer
only under a backlog, which the officer's detector health and ``security status`` report above
a high-water mark. A step-up or an ended session decided in the background reaches the
session's next request (the thread holds the session's key in memory, never stored); an event
scored by a sweep answers the account instead (its sessions revoked at "contain").

With ``"inline"`` (tests by default, the attack lab when asked) every kind is scored on the
request, the non-gating ones by :func:`observe_committed` once the action commits, as Zulip
sends its events: an action that rolls back never happened and is never scored. There, if the
loaded scorer turns out slower than its budget (:meth:`.runtime.Runtime.slow`), those kinds are
stored unscored and scored in one batch by :func:`score_pending` (:mod:`.batching`).

:func:`observe` must never break the action being audited: everything it does runs in a
transaction of its own (a savepoint inside the action's) inside a ``try``, so a failure (a
scorer that raises, a database error) is logged, counted on the dashboard's detector health,
rolled back, and the action goes on. It never sees its own writes: responses and officer
decisions are audited as ``security.*`` (not events), and entries written while it works are
offered to no observer (:func:`carevault.web.audit.log.unobserved`).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from carevault.security.assessment import Assessment
from carevault.security.events import AttackClass, Event, EventKind
from carevault.security.response import Level
from carevault.web.accounts.models import User
from carevault.web.audit import log
from carevault.web.audit.models import AuditEntry
from carevault.web.clientinfo import ClientInfo

from . import context
from .context import Serving
from .models import SecurityEvent
from .observed import Observed, kind_of, observe_entry
from .responses import respond
from .runtime import Runtime, baseline_limits, policy, runtime
from .shared_rules import SHARED_KINDS, with_shared_rules

logger = logging.getLogger("carevault.security")

# Kinds whose answer must come before the attacker's next attempt: observed inside the action's
# transaction (observe_gating) and always scored on the request.
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


# -- observing -------------------------------------------------------------------------------------


def observe_gating(entry: AuditEntry, client: ClientInfo | None) -> None:
    """The audit log's synchronous observer (registered ``IN_TRANSACTION``): the kinds that
    gate an attacker, whose answer must stop the request being served; and, with background
    scoring, every other kind's pending row (one insert in a savepoint of the action's own
    transaction, so it commits with the action and costs no commit of its own; it is queued
    for the scorer once the action commits, and vanishes with an action that rolls back)."""
    kind = kind_of(entry)
    if kind in IMMEDIATE_KINDS or (kind is not None and background()):
        observe(entry, client)


def observe_committed(entry: AuditEntry, client: ClientInfo | None) -> None:
    """The audit log's after-commit observer (registered ``AFTER_COMMIT``): with inline
    scoring, every other kind, once the action it stands for has happened."""
    kind = kind_of(entry)
    if kind is not None and kind not in IMMEDIATE_KINDS and not background():
        observe(entry, client)


def observe(entry: AuditEntry, client: ClientInfo | None) -> None:
    """Turn one audit entry into a scored event (never raises; see the module docstring)."""
    if _busy.get() or not settings.SECURITY_EVENTS:
        return
    try:
        with _at_work(), transaction.atomic():
            observed = observe_entry(entry, client, serving=context.current())
            if observed is not None:
                process(observed)
    except Exception as exc:
        logger.exception(
            "the security layer failed on audit entry %s (%s)", entry.seq, entry.action
        )
        _note_error(exc)


def observe_event(event: Event) -> SecurityEvent | None:
    """An event that is not an audit entry (host samples). Never raises."""
    if _busy.get() or not settings.SECURITY_EVENTS:
        return None
    try:
        with _at_work(), transaction.atomic():
            return process(Observed(event, 0, None, None, False))
    except Exception as exc:
        logger.exception("the security layer failed on a %s event", event.kind.value)
        _note_error(exc)
        return None


@contextmanager
def _at_work() -> Iterator[None]:
    """While the layer works it observes nothing again, and the entries it writes (its
    responses, what the sink does) are offered to no audit observer, now or after commit."""
    token = _busy.set(True)
    try:
        with log.unobserved():
            yield
    finally:
        _busy.reset(token)


def _note_error(exc: BaseException) -> None:
    try:
        runtime().record_error(exc)
    except Exception:  # the runtime itself could not be built: already logged
        logger.debug("no runtime to count the error in")


# Where a stored pending event is handed to be scored now: the background scorer's queue,
# registered at AppConfig.ready() (scorer.py imports this module, not the other way round).
_queue_for_scoring: Callable[[int, Observed], None] | None = None


def register_queue(queue: Callable[[int, Observed], None] | None) -> None:
    global _queue_for_scoring
    _queue_for_scoring = queue


def background() -> bool:
    """Are the kinds that gate no attacker scored off the request (``SECURITY_SCORING``)?"""
    return str(settings.SECURITY_SCORING) in ("background", "worker")


def process(observed: Observed) -> SecurityEvent:
    """Score, store, attach to an incident and respond (inside the caller's savepoint); or, for
    the kinds that can wait, store the event pending and hand it to the background scorer."""
    rt = runtime()
    event = observed.event
    if event.kind not in IMMEDIATE_KINDS and background():
        # One insert: this row is the durable queue; the in-process queue only says "now".
        row = _store(observed, None, 0.0, rt)
        if _queue_for_scoring is not None:  # else the sweep finds the row (nothing is lost)
            _queue_for_scoring(row.pk, observed)
        return row
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
    respond(row, observed, assessment)
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


# -- scoring stored events (the background scorer, the sweep, the dashboard) ----------------------


def new_claim_token() -> str:
    """Who claims a batch: the process and thread (for the officer), unique per batch."""
    import os
    import threading
    import uuid

    return f"{os.getpid()}:{threading.get_ident() % 100_000}:{uuid.uuid4().hex[:16]}"[:64]


def lease_seconds() -> float:
    """A claim older than this is a dead (or stuck) scorer's, and is taken over."""
    return float(getattr(settings, "SECURITY_SCORING_LEASE_SECONDS", 60))


def claim(
    token: str, *, limit: int, pks: list[int] | None = None, grace_seconds: float = 0.0
) -> list[SecurityEvent]:
    """Claim up to ``limit`` unscored rows (the given ones, else the oldest) for ``token`` and
    return them. Atomic: the UPDATE only takes rows that are still unscored and unclaimed (or
    whose claim is older than the lease), so of two scorers racing for a row exactly one gets
    it; on PostgreSQL the candidates are also locked SKIP LOCKED, so scorers pick disjoint sets
    without waiting on each other (SQLite serialises writers, which does the same).
    ``grace_seconds`` leaves rows younger than that to the process that queued them."""
    now = timezone.now()
    claimable = Q(claimed_by="") | Q(claimed_at__lt=now - dt.timedelta(seconds=lease_seconds()))
    pending = SecurityEvent.objects.filter(claimable, risk__isnull=True)
    if pks is not None:
        pending = pending.filter(pk__in=pks)
    if grace_seconds > 0:
        pending = pending.filter(at__lt=now - dt.timedelta(seconds=grace_seconds))
    with transaction.atomic():
        pick = pending.order_by("at", "pk")
        if connection.features.has_select_for_update_skip_locked:
            pick = pick.select_for_update(skip_locked=True)
        ids = list(pick.values_list("pk", flat=True)[:limit])
        if ids:
            SecurityEvent.objects.filter(claimable, pk__in=ids, risk__isnull=True).update(
                claimed_by=token, claimed_at=now
            )
    if not ids:
        return []
    return list(
        SecurityEvent.objects.filter(pk__in=ids, claimed_by=token, risk__isnull=True).order_by(
            "at", "pk"
        )
    )


def release(token: str) -> None:
    """Give back what ``token`` claimed and did not score (the scorer failed)."""
    SecurityEvent.objects.filter(claimed_by=token, risk__isnull=True).update(
        claimed_by="", claimed_at=None
    )


def score_pending(limit: int = PENDING_BATCH, *, grace_seconds: float = 0.0) -> int:
    """Claim and score up to ``limit`` stored unscored events (queued for the background scorer,
    left over by a full queue or a dead process, deferred, or failed); returns how many. Safe in
    any number of processes at once (:func:`claim`). Stops at the first failure (a broken
    scorer is not retried on every row); what it claimed and did not score is released.

    A plain function: the background scorer's sweep, the dashboard's risk timeline, ``security
    activity`` and (later) a periodic task all call it."""
    if _busy.get():
        return 0
    done = 0
    token = new_claim_token()
    try:
        with _at_work():
            rt = runtime()
            for row in claim(token, limit=limit, grace_seconds=grace_seconds):
                if score_claimed(rt, row, token):
                    done += 1
    except Exception as exc:
        logger.exception("batch scoring stopped")
        _note_error(exc)
        _release_quietly(token)
    return done


def _release_quietly(token: str) -> None:
    try:
        release(token)
    except Exception:
        logger.exception("releasing a scoring claim failed (its lease will run out)")


def score_claimed(
    rt: Runtime, row: SecurityEvent, token: str | None, serving: Serving | None = None
) -> bool:
    """Score one stored event and respond to it (the caller is at work: :func:`_at_work`).
    ``token``: the claim it holds on the row; None: no claim (the process's own queue), the row
    must then be unclaimed (or its claim stale). ``serving`` is the session the event came
    from, when the process that queued it still knows it (scorer.py): a session-scoped answer
    (a step-up, an ended session) is then left on it. False: another scorer has the row.

    The score is computed before any transaction opens: on SQLite a write transaction holds
    the database's one write lock, and requests must not wait on the scorer's arithmetic."""
    event = event_of(row)
    user = User.objects.filter(username=event.actor).first() if event.actor else None
    assessment, ms = _assess(rt, event)
    action = ""
    if row.audit_seq and event.kind in SHARED_KINDS:
        found = AuditEntry.objects.filter(seq=row.audit_seq)
        action = str(found.values_list("action", flat=True).first() or "")
    live = serving is not None and user is not None and bool(event.session)
    seq = row.audit_seq or 0
    observed = Observed(event, seq, user, serving if live else None, live, action)
    assessment = with_shared_rules(observed, assessment)
    if token is None:
        stale = timezone.now() - dt.timedelta(seconds=lease_seconds())
        ours = Q(claimed_by="") | Q(claimed_at__lt=stale)
    else:
        ours = Q(claimed_by=token)
    with transaction.atomic():
        row.risk = assessment.risk
        row.level = int(policy().level(assessment.risk))
        row.detectors = dict(assessment.detectors)
        row.features = dict(assessment.features)
        row.rules = list(assessment.rules)
        row.score_ms = round(ms, 4)
        row.scorer = f"{rt.loaded.name} {rt.loaded.version}".strip()[:64]
        row.claimed_by, row.claimed_at = "", None
        fields = ["risk", "level", "detectors", "features", "rules", "score_ms", "scorer"]
        # Only if it is still ours and unscored: the update is the commit point that makes
        # "never scored twice" hold even when a lease ran out under a slow scorer.
        values = {name: getattr(row, name) for name in fields}
        mine = SecurityEvent.objects.filter(ours, pk=row.pk, risk__isnull=True)
        updated = mine.update(claimed_by="", claimed_at=None, **values)
        if not updated:
            return False
        respond(row, observed, assessment)
    return True
