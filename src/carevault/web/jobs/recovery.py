"""A killed worker's task is handed to the next worker (database backend).

``django_tasks_db`` marks a task RUNNING when a worker claims it and never looks at it again: a
worker killed by SIGKILL, the OOM killer or a power cut leaves it RUNNING for ever. So every
worker writes a heartbeat (:class:`WorkerBeat`) when it starts and every
``TASKS_BEAT_SECONDS``, and at start and every beat looks for RUNNING tasks whose worker is dead:

* its heartbeat is older than ``TASKS_DEAD_AFTER_SECONDS``, or it stopped, or it has none; or
* it names a process of this machine (``host:pid:thread@boot``) that no longer runs (no need to
  wait: the same test :mod:`carevault.web.vault.reencrypt` applies to its leases).

Such a task goes back to READY (a compare-and-set on its status and worker list, so of two
workers that saw it at once only one moves it), and the next worker runs it again: every task is
idempotent and resumable. A task already tried ``TASKS_MAX_ATTEMPTS`` times is failed instead
(a task that kills its worker every time must not kill every worker for ever).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from carevault.web.vault.reencrypt import holder_is_gone, owner_name

from .models import JobRun, JobState, WorkerBeat

logger = logging.getLogger(__name__)

LOST = "carevault.web.jobs.recovery.WorkerLost"


class WorkerLost(Exception):
    """The worker running the task died, too many times."""


def new_worker_id() -> str:
    """``host:pid:thread@boot``: unique, and tells a dead process of this machine at once."""
    return owner_name()


def beat(worker_id: str, *, backend: str, queues: list[str]) -> None:
    now = timezone.now()
    updated = WorkerBeat.objects.filter(worker_id=worker_id).update(beat_at=now, stopped_at=None)
    if not updated:
        WorkerBeat.objects.create(
            worker_id=worker_id,
            backend=backend,
            queues=",".join(queues)[:200],
            started_at=now,
            beat_at=now,
        )


def stopped(worker_id: str) -> None:
    WorkerBeat.objects.filter(worker_id=worker_id).update(stopped_at=timezone.now())


def dead_after() -> dt.timedelta:
    return dt.timedelta(seconds=int(settings.TASKS_DEAD_AFTER_SECONDS))


def is_dead(worker_id: str, beats: dict[str, WorkerBeat], now: dt.datetime) -> bool:
    if holder_is_gone(worker_id):
        return True
    known = beats.get(worker_id)
    if known is None:
        return False  # judged by how long ago its task started (see recover)
    return known.stopped_at is not None or known.beat_at < now - dead_after()


@dataclass
class Recovered:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def recover(backend_name: str = "default") -> Recovered:
    """Put back the RUNNING tasks of dead workers (or fail them after too many attempts)."""
    now = timezone.now()
    done = Recovered()
    running = list(
        DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING, backend_name=backend_name)
    )
    if not running:
        return done
    beats = {b.worker_id: b for b in WorkerBeat.objects.all()}
    for task in running:
        worker = str(task.worker_ids[-1]) if task.worker_ids else ""
        if worker in beats or holder_is_gone(worker):
            dead = is_dead(worker, beats, now)
        else:
            # A worker that never wrote a heartbeat (an older version, a plain db_worker):
            # dead once its task has run for longer than a heartbeat may be missed.
            dead = task.started_at is None or task.started_at < now - dead_after()
        if dead:
            _hand_back(task, worker, done)
    if done.requeued or done.failed:
        logger.warning(
            "tasks of dead workers: %d queued again, %d failed for good",
            len(done.requeued),
            len(done.failed),
        )
    return done


def _hand_back(task: DBTaskResult[Any, Any], worker: str, done: Recovered) -> None:
    attempts = len(task.worker_ids)
    give_up = attempts >= int(settings.TASKS_MAX_ATTEMPTS)
    run_id = _run_id(task)
    with transaction.atomic():
        current = DBTaskResult.objects.select_for_update().filter(pk=task.pk).first()
        if (
            current is None
            or current.status != TaskResultStatus.RUNNING
            or current.worker_ids != task.worker_ids
        ):
            return  # finished meanwhile, or another worker handed it back first
        if give_up:
            current.status = TaskResultStatus.FAILED
            current.finished_at = timezone.now()
            current.exception_class_path = LOST
            current.traceback = f"{LOST}: the worker died {attempts} times running this task\n"
            current.save(
                update_fields=["status", "finished_at", "exception_class_path", "traceback"]
            )
            if run_id is not None:
                JobRun.objects.filter(pk=run_id).update(
                    state=JobState.FAILED,
                    error=f"WorkerLost: the worker died {attempts} times",
                    finished_at=timezone.now(),
                )
            done.failed.append(str(task.pk))
            return
        current.status = TaskResultStatus.READY
        current.save(update_fields=["status"])
        if run_id is not None:
            JobRun.objects.filter(pk=run_id, state=JobState.RUNNING).update(
                state=JobState.QUEUED, error=f"worker {worker[:40]} died; queued again"
            )
        done.requeued.append(str(task.pk))


def _run_id(task: DBTaskResult[Any, Any]) -> int | None:
    """The JobRun a task records into: its first argument (every task of :mod:`.tasks`)."""
    args = (task.args_kwargs or {}).get("args") or []
    return int(args[0]) if args and isinstance(args[0], int) else None
