"""The background scorer: events that gate no attacker, scored off the request.

After an action commits, :func:`.scoring.process` stores its event unscored (one insert: the
row is the durable queue, a crash loses nothing) and :func:`submit_on_commit` hands its id to a
bounded in-process queue. A daemon thread per process (started on first use, and again in a
forked child: gunicorn forks its workers) drains the queue in batches: it claims the rows
(:func:`.scoring.claim`, so several processes never score one row twice), scores them with the
loaded scorer and calls ``respond(...)`` as the request would have. Every ``SWEEP_SECONDS`` it
also sweeps rows nobody queued or finished: a full queue's, a dead process's (their claim runs
out after the lease), a failed scorer's.

**Back-pressure.** When the queue is full (``SECURITY_SCORING_QUEUE``), the request does not
wait and nothing is lost: the row stays pending for the next sweep (any process's, or
:func:`.scoring.score_pending`). When the pending rows exceed :func:`high_water`, the officer's
detector health and ``carevault security status`` say so, and a warning is logged. There is
deliberately no fall back to scoring on the request: a backlog means events arrive faster than
the scorer takes them, and scoring them on the requests would only move the queue into every
page's latency (and the hard rules that must stop an attacker run on the request anyway).

**The session an event came from.** A step-up or an ended session must reach the session that
read the data. The queued item keeps, in memory only, that session's key (never stored), so the
thread acts on it through the session store once the request is over (a step-up is demanded on
it, an ended session is deleted). An event scored by a sweep no longer knows its session: the
account is answered instead (its sessions revoked at "contain", as for any event whose session
cannot be reached).

Tests: :func:`drain` scores everything queued and pending in the caller's thread (or waits for
the thread) — deterministic, no sleeps; :func:`reset` stops the thread and empties the queue.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction

from carevault.web.accounts.models import User
from carevault.web.clientinfo import ClientInfo
from carevault.web.login import factor_state, sessions

from . import scoring
from .context import Pending, Serving
from .models import SecurityEvent
from .observed import Observed
from .runtime import runtime

logger = logging.getLogger("carevault.security")

# "worker": stored pending as in "background", but no thread and no queue in the serving
# processes: a separate process drains them (score_pending() from a periodic task, once
# `carevault worker` runs it; the dashboard's timeline and `security activity` drain too).
MODES = ("background", "inline", "worker")
BATCH = 64
SWEEP_SECONDS = 5.0
# A sweep leaves rows younger than this to the process that queued them (it knows their session).
SWEEP_GRACE_SECONDS = 2.0
WARN_EVERY_SECONDS = 60.0
# The thread scores in the gaps between this process's requests: before each row it waits for
# no request to be in flight, at most this long per batch (a saturated process still scores).
IDLE_WAIT_SECONDS = 0.25


def high_water() -> int:
    """Pending rows above which the backlog is reported (dashboard, ``security status``)."""
    return int(getattr(settings, "SECURITY_SCORING_HIGH_WATER", 5000))


@dataclass(frozen=True)
class Live:
    """The session an event came from, while the request that queued it is remembered."""

    session_key: str
    client: ClientInfo
    step_up_pending: bool


@dataclass(frozen=True)
class Item:
    pk: int
    live: Live | None = None


@dataclass
class _State:
    pid: int
    queue: queue.Queue[Item | None]  # None: the thread's signal to stop
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    queued: int = 0
    overflowed: int = 0
    scored: int = 0
    swept: int = 0
    last_warned: float = 0.0


_state: _State | None = None
_state_lock = threading.Lock()
# Whether submit() starts the thread. Tests switch it off and call drain(): a thread would not
# see a test's uncommitted rows (and would outlive the test).
_use_thread = True

# Requests this process is serving now (the security middleware counts them): the scorer
# thread waits for a gap, so it does not take the interpreter lock from a page being built.
_in_flight = 0
_flight_lock = threading.Lock()
_idle = threading.Event()
_idle.set()


def request_started() -> None:
    global _in_flight
    with _flight_lock:
        _in_flight += 1
        _idle.clear()


def request_finished() -> None:
    global _in_flight
    with _flight_lock:
        _in_flight = max(0, _in_flight - 1)
        if _in_flight == 0:
            _idle.set()


def _current() -> _State:
    """This process's queue (a new one in a forked child: the parent's thread is not there)."""
    global _state
    with _state_lock:
        if _state is None or _state.pid != os.getpid():
            bound = max(1, int(settings.SECURITY_SCORING_QUEUE))
            _state = _State(pid=os.getpid(), queue=queue.Queue(maxsize=bound))
        return _state


def _forget_in_child() -> None:
    # The parent's thread does not exist here, nor its requests in flight.
    global _state, _in_flight
    _state = None
    _in_flight = 0
    _idle.set()


os.register_at_fork(after_in_child=_forget_in_child)


def use_thread(enabled: bool) -> None:
    global _use_thread
    _use_thread = enabled


def check_mode() -> None:
    """A misspelt ``SECURITY_SCORING`` stops start-up (security must not silently change)."""
    from django.core.exceptions import ImproperlyConfigured

    if str(settings.SECURITY_SCORING) not in MODES:
        raise ImproperlyConfigured(
            f"CAREVAULT_SECURITY_SCORING: {settings.SECURITY_SCORING!r} is not one of "
            + ", ".join(MODES)
        )


# -- the request's side ---------------------------------------------------------------------------


def submit_on_commit(pk: int, observed: Observed) -> None:
    """Queue a stored event once its row is committed (the thread must be able to read it)."""
    live = _live(observed)
    transaction.on_commit(lambda: submit(Item(pk, live)), robust=True)


def _live(observed: Observed) -> Live | None:
    serving = observed.serving
    if not observed.live or serving is None:
        return None
    key = serving.session_key()
    if not key:
        return None
    step_up = bool(serving.pending.step_up or serving.step_up_demanded())
    return Live(session_key=key, client=serving.client(), step_up_pending=step_up)


def submit(item: Item) -> bool:
    """Hand a stored event to this process's scorer. Never blocks: when the queue is full the
    row stays pending for the sweep (False)."""
    if str(settings.SECURITY_SCORING) == "worker":
        return False  # another process scores it: the row is the queue
    state = _current()
    if _use_thread:
        _ensure_thread(state)
    try:
        state.queue.put_nowait(item)
    except queue.Full:
        with state.lock:
            state.overflowed += 1
        return False
    with state.lock:
        state.queued += 1
    return True


def _ensure_thread(state: _State) -> None:
    with state.lock:
        if state.thread is not None and state.thread.is_alive():
            return
        state.stop.clear()
        state.thread = threading.Thread(
            target=_run, args=(state,), name="carevault-scorer", daemon=True
        )
        state.thread.start()


# -- the scorer's side ----------------------------------------------------------------------------


def _run(state: _State) -> None:
    last_sweep = time.monotonic()
    try:
        while not state.stop.is_set():
            batch = _take(state, timeout=SWEEP_SECONDS)
            stop = None in batch
            items = [item for item in batch if item is not None]
            try:
                if items:
                    _score_items(state, items, in_gaps=True)
                if time.monotonic() - last_sweep >= SWEEP_SECONDS:
                    last_sweep = time.monotonic()
                    _sweep(state)
            except Exception:
                logger.exception("the background scorer failed on a batch (rows stay pending)")
            finally:
                for _ in batch:
                    state.queue.task_done()
                close_old_connections()
            if stop:
                break
    finally:
        connection.close()


def _take(state: _State, *, timeout: float | None) -> list[Item | None]:
    try:
        first = state.queue.get(timeout=timeout) if timeout else state.queue.get_nowait()
    except queue.Empty:
        return []
    batch = [first]
    while len(batch) < BATCH and first is not None:
        try:
            batch.append(state.queue.get_nowait())
        except queue.Empty:
            break
    return batch


def _score_items(state: _State, batch: list[Item], *, in_gaps: bool = False) -> int:
    """Score the batch's rows that are still pending and claimed by no other scorer. No claim is
    taken: these ids are this process's own (a sweep leaves rows this young alone), and the
    write that stores each score is conditional, so a row another scorer has is skipped, never
    scored twice; that keeps each row to one short write transaction. On a failure the rest
    stays pending for the sweep. ``in_gaps``: between this process's requests (the thread)."""
    if not settings.SECURITY_EVENTS:
        return 0
    live = {item.pk: item.live for item in batch}
    done = 0
    deadline = time.monotonic() + IDLE_WAIT_SECONDS
    with scoring._at_work():
        try:
            rt = runtime()
            pending = SecurityEvent.objects.filter(pk__in=list(live), risk__isnull=True)
            for row in pending.order_by("at", "pk"):
                if in_gaps:
                    _idle.wait(timeout=max(0.0, deadline - time.monotonic()))
                serving = _serving(row, live.get(row.pk))
                if scoring.score_claimed(rt, row, None, serving):
                    done += 1
                    if serving is not None:
                        _carry_out(serving, live[row.pk])
        except Exception as exc:
            logger.exception("background scoring stopped (the rest stays pending)")
            scoring._note_error(exc)
    with state.lock:
        state.scored += done
    return done


def _sweep(state: _State) -> int:
    done = scoring.score_pending(grace_seconds=SWEEP_GRACE_SECONDS)
    with state.lock:
        state.swept += done
    if time.monotonic() - state.last_warned < WARN_EVERY_SECONDS:
        return done
    waiting = backlog()
    if waiting > high_water():
        state.last_warned = time.monotonic()
        logger.warning(
            "security scoring backlog: %d events pending (high-water mark %d)",
            waiting,
            high_water(),
        )
    return done


def _serving(row: SecurityEvent, live: Live | None) -> Serving | None:
    """A stand-in for the request that queued the event: what it knew of its session."""
    if live is None or not row.session:
        return None
    user = User.objects.filter(username=row.actor).first() if row.actor else None
    return Serving(
        client=lambda: live.client,
        user=lambda: user,
        step_up_demanded=lambda: live.step_up_pending,
        session_key=lambda: live.session_key,
    )


def _carry_out(serving: Serving, live: Live | None) -> None:
    """What the response decided for the session, done through the session store (the
    request that read the data is over; its next one finds the step-up or no session)."""
    pending: Pending = serving.pending
    if live is None or not (pending.end_session or pending.step_up):
        return
    try:
        store = sessions.session_store(live.session_key)
        if pending.end_session:
            store.delete()
        else:
            factor_state.demand_step_up(store, pending.step_up)
    except Exception:
        logger.exception("acting on the session of a background-scored event failed")


# -- control and health ---------------------------------------------------------------------------


def drain() -> int:
    """Score everything queued and pending now, and return how many (tests, ``security
    activity``): with the thread running, wait for its queue; without, score the queue in this
    thread. Then sweep what is left with no grace."""
    state = _current()
    done = 0
    thread = state.thread
    if thread is not None and thread.is_alive():
        state.queue.join()
    else:
        while batch := _take(state, timeout=None):
            try:
                done += _score_items(state, [item for item in batch if item is not None])
            finally:
                for _ in batch:
                    state.queue.task_done()
    while swept := scoring.score_pending():
        done += swept
    return done


def settle(timeout_seconds: float = 30.0) -> int:
    """Drain, then wait (bounded) for rows that other live scorers claimed: what the attack lab
    and the officer read afterwards is complete. Returns the rows still pending."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        drain()
        waiting = backlog()
        if waiting == 0 or time.monotonic() >= deadline:
            return waiting
        time.sleep(0.2)  # another process's scorer holds them: its lease bounds the wait


def backlog() -> int:
    return SecurityEvent.objects.filter(risk__isnull=True).count()


def reset() -> None:
    """Stop this process's thread and forget its queue (tests: nothing carries over)."""
    global _state
    with _state_lock:
        state, _state = _state, None
    if state is None:
        return
    state.stop.set()
    thread = state.thread
    if thread is not None and thread.is_alive():
        state.queue.join()  # what it holds is finished, not cut off mid-transaction
        state.queue.put(None)
        thread.join()


def health() -> dict[str, Any]:
    """The scorer's mode, queue and backlog (dashboard detector health, ``security status``)."""
    state = _current()
    waiting = backlog()
    thread = state.thread
    with state.lock:
        return {
            "mode": str(settings.SECURITY_SCORING),
            "queued": state.queue.qsize(),
            "queue_bound": state.queue.maxsize,
            "overflowed": state.overflowed,
            "scored_in_background": state.scored,
            "swept": state.swept,
            "thread_alive": bool(thread is not None and thread.is_alive()),
            "backlog": waiting,
            "high_water": high_water(),
            "over_high_water": waiting > high_water(),
        }


# -- the worker's side (SECURITY_SCORING = "worker") -----------------------------------------------


def drain_forever(stop: threading.Event, *, idle_seconds: float = 0.5) -> None:
    """Score pending events in batches until ``stop`` is set: ``carevault worker`` runs this in
    a thread when ``SECURITY_SCORING`` is ``"worker"``, so the serving processes share neither
    their interpreter lock nor their database connections with the scoring. When nothing is
    pending it looks again after ``idle_seconds`` (the window the dashboard sees). Never
    raises: a failing batch is logged and counted (the detector health shows it) and tried again
    on the next round. The caller's thread closes its connections when this returns."""
    while not stop.is_set():
        done = 0
        try:
            done = scoring.score_pending()
        except Exception:  # score_pending logs its own; this is the database going away
            logger.exception("the worker's scorer failed a round")
        finally:
            close_old_connections()
        if done == 0:
            stop.wait(idle_seconds)


def drain_now(limit: int = 10_000) -> int:
    """Score everything pending now (``carevault worker --burst``); how many were scored."""
    total = 0
    while total < limit:
        done = scoring.score_pending()
        if done == 0:
            break
        total += done
    return total
