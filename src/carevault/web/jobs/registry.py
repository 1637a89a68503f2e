"""Enqueueing background work, and recording what each run did.

``enqueue(kind, ...)`` writes a :class:`JobRun` in the caller's transaction and hands the task to
the queue only once that transaction commits (``transaction.on_commit``): a rolled-back request
enqueues nothing, and a worker never looks for rows that are not committed yet. Every task runs
its body through :func:`tracked`, which records the attempt, its progress and its outcome.

Other apps add their own kinds with :func:`register` (a ``django_tasks`` task whose arguments
start with the run's id): the registry is how they share the queue without importing each other.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_tasks import TaskContext
from django_tasks.base import Task

from .models import OPEN_STATES, JobRun, JobState

logger = logging.getLogger(__name__)

_tasks: dict[str, Task[Any, Any]] = {}

# A run still open after this long no longer stops `enqueue(..., once=True)`: its task may have
# been lost (a flushed Redis), and a duplicate of an idempotent task costs nothing.
ONCE_WINDOW = dt.timedelta(minutes=10)


class UnknownJob(ValueError):
    """No task is registered under that kind."""


class TaskFailed(Exception):
    """What the queue backend stores for a failed task: the kind and the error's class only
    (its message and traceback could quote a value)."""


def register(kind: str, task: Task[Any, Any]) -> None:
    _tasks[kind] = task


def kinds() -> list[str]:
    return sorted(_tasks)


def task_for(kind: str) -> Task[Any, Any]:
    # The built-in kinds register when the app is ready (apps.py imports .tasks).
    try:
        return _tasks[kind]
    except KeyError:
        raise UnknownJob(f"no background job is called {kind!r}") from None


def enqueue(
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    requested_by: str = "",
    retry_of: JobRun | None = None,
    once: bool = False,
    total: int = 0,
) -> JobRun | None:
    """Record a run of ``kind`` and queue its task after the current transaction commits.
    ``once``: nothing is queued when a run of that kind is already waiting or running (the
    sealer: one queued run covers every commit until it starts). ``params`` are identifiers,
    never PHI: they are stored and shown to officers."""
    task = task_for(kind)
    if once:
        recent = timezone.now() - ONCE_WINDOW
        waiting = JobRun.objects.filter(kind=kind, state=JobState.QUEUED, enqueued_at__gte=recent)
        if waiting.exists():
            return None
    run = JobRun.objects.create(
        kind=kind,
        params=params or {},
        requested_by=requested_by[:150],
        retry_of=retry_of,
        total=total,
    )
    transaction.on_commit(lambda: _hand_over(task, run.pk, params or {}), robust=True)
    return run


def _hand_over(task: Task[Any, Any], run_id: int, params: dict[str, Any]) -> None:
    result = task.enqueue(run_id, **params)
    # The immediate backend has run the task already; the others record the id to find it.
    JobRun.objects.filter(pk=run_id, task_id="").update(task_id=str(result.id)[:64])


def defer(context: TaskContext, run_id: int, params: dict[str, Any], at: dt.datetime) -> bool:
    """Queue this run's task again for ``at`` (another worker holds what it needs until then);
    False when the backend cannot defer (the immediate one)."""
    task = context.task_result.task
    if not task.get_backend().supports_defer:
        return False
    result = task.using(run_after=at).enqueue(run_id, **params)
    JobRun.objects.filter(pk=run_id).update(
        state=JobState.QUEUED, task_id=str(result.id)[:64], beat_at=timezone.now()
    )
    return True


class Progress:
    """How a task reports done/total (each call is one small UPDATE, and a heartbeat)."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id

    def __call__(self, done: int, total: int | None = None) -> None:
        fields: dict[str, Any] = {"done": max(0, done), "beat_at": timezone.now()}
        if total is not None:
            fields["total"] = max(0, total)
        JobRun.objects.filter(pk=self.run_id).update(**fields)


def _worker_of(context: TaskContext) -> str:
    ids = context.task_result.worker_ids
    return str(ids[-1])[:64] if ids else ""


def tracked(
    context: TaskContext,
    run_id: int,
    work: Callable[[Progress], str],
) -> str:
    """Run ``work`` as attempt n of the run: RUNNING while it works, DONE with its summary, or
    FAILED with the error's class (re-raised as :class:`TaskFailed`, so the backend keeps no
    message). A run already DONE is not done again (the queue delivered it twice)."""
    now = timezone.now()
    run = JobRun.objects.filter(pk=run_id).first()
    if run is None:
        return "no such run"
    if run.state == JobState.DONE:
        return run.summary
    JobRun.objects.filter(pk=run_id).update(
        state=JobState.RUNNING,
        attempts=F("attempts") + 1,
        worker=_worker_of(context),
        started_at=run.started_at or now,
        beat_at=now,
        finished_at=None,
    )
    try:
        summary = work(Progress(run_id))
    except Deferred as deferred:
        return deferred.summary
    except Exception as exc:
        error = describe(exc)
        JobRun.objects.filter(pk=run_id).update(
            state=JobState.FAILED, error=error, finished_at=timezone.now()
        )
        logger.warning("background job %s (run %s) failed: %s", run.kind, run_id, error)
        raise TaskFailed(f"{run.kind} failed: {type(exc).__name__}") from None
    JobRun.objects.filter(pk=run_id).update(
        state=JobState.DONE,
        summary=summary[:200],
        error="",
        finished_at=timezone.now(),
        beat_at=timezone.now(),
    )
    return summary


class Deferred(Exception):
    """Raised by a task's body that queued itself again for later (see :func:`defer`)."""

    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


class SafeError(Exception):
    """An error whose message this code wrote (no value in it): shown to officers as it is."""


def describe(exc: BaseException) -> str:
    """The error summary a run keeps: the class, and the message only of errors this code
    words itself (a database or crypto error's text may quote a value)."""
    name = type(exc).__name__
    if isinstance(exc, SafeError):
        return f"{name}: {exc}"[:200]
    return name[:200]


def resend_lost(older_than: dt.timedelta) -> int:
    """Runs recorded but never handed to the queue (the process died between its commit and
    the hand-over): hand them over now. A worker calls this at start and at every heartbeat;
    ``older_than`` leaves alone the runs whose hand-over is merely in progress. A run handed
    over twice is harmless: a run already done is not done again (:func:`tracked`)."""
    cutoff = timezone.now() - older_than
    lost = JobRun.objects.filter(state=JobState.QUEUED, task_id="", enqueued_at__lt=cutoff)
    count = 0
    for run in lost:
        if run.kind in _tasks:
            _hand_over(_tasks[run.kind], run.pk, run.params)
            count += 1
    if count:
        logger.warning("%d background job(s) recorded but never queued: queued now", count)
    return count


def open_runs(kind: str) -> list[JobRun]:
    return list(JobRun.objects.filter(kind=kind, state__in=OPEN_STATES))
