"""The worker loop ``carevault worker`` runs.

Database backend: ``django_tasks_db``'s worker (it claims a READY task under a row lock, runs it
in this process, records the outcome), plus a heartbeat thread that writes this worker's
:class:`WorkerBeat` every ``TASKS_BEAT_SECONDS`` and hands the tasks of dead workers back to the
queue (:mod:`.recovery`), and hands over runs that were recorded but never queued.

Redis backend: an RQ worker on the same queues (RQ keeps its own worker heartbeats; a job whose
worker died is retried by its retries, :mod:`.rqbackend`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connections
from django_tasks_db.management.commands.db_worker import Worker as DatabaseWorker

from . import recovery, registry

logger = logging.getLogger(__name__)


@dataclass
class WorkerReport:
    worker_id: str
    backend: str
    queues: list[str]
    tasks: int
    requeued_at_start: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker_id,
            "backend": self.backend,
            "queues": self.queues,
            "tasks": self.tasks,
            "requeued_at_start": self.requeued_at_start,
        }


Beat = Callable[[], object]


def housekeeping(worker_id: str, queues: list[str], on_beat: Beat | None = None) -> int:
    """One beat: this worker is alive; dead workers' tasks go back to the queue; runs never
    handed to the queue are handed over; ``on_beat`` (what the command adds: the backup
    schedule). The number of tasks handed back."""
    recovery.beat(worker_id, backend="database", queues=queues)
    handed_back = recovery.recover()
    registry.resend_lost(recovery.dead_after())
    if on_beat is not None:
        on_beat()
    return len(handed_back.requeued)


class _Heart(threading.Thread):
    def __init__(self, beat: Beat) -> None:
        super().__init__(name="carevault-worker-heartbeat", daemon=True)
        self.beat = beat
        self.stopping = threading.Event()

    def run(self) -> None:
        interval = float(settings.TASKS_BEAT_SECONDS)
        while not self.stopping.wait(interval):
            try:
                self.beat()
            except Exception:
                # A busy or briefly unreachable database: the next beat tries again (a worker
                # that misses beats for DEAD_AFTER seconds has its task handed on, safely).
                logger.exception("worker heartbeat failed")
            finally:
                connections.close_all()


class _Worker(DatabaseWorker):
    def run_task(self, db_task_result: Any) -> None:
        super().run_task(db_task_result)
        # The task ran in this thread; its connection may sit in a transaction-less state the
        # next claim should not inherit.
        connections.close_all()


def run_database_worker(
    queues: list[str],
    *,
    burst: bool,
    interval: float = 1.0,
    max_tasks: int | None = None,
    on_beat: Beat | None = None,
) -> WorkerReport:
    worker_id = recovery.new_worker_id()
    requeued = housekeeping(worker_id, queues, on_beat)
    heart = _Heart(lambda: housekeeping(worker_id, queues, on_beat))
    heart.start()
    worker = _Worker(
        queue_names=queues,
        interval=interval,
        batch=burst,
        backend_name="default",
        startup_delay=False,
        max_tasks=max_tasks,
        worker_id=worker_id,
        excluded_queue_names=[],
    )
    worker.configure_signals()
    try:
        worker.run()
    finally:
        heart.stopping.set()
        heart.join(timeout=5)
        recovery.stopped(worker_id)
    return WorkerReport(worker_id, "database", queues, worker._run_tasks, requeued)


def run_rq_worker(queues: list[str], *, burst: bool, on_beat: Beat | None = None) -> WorkerReport:
    import django_rq
    from django_tasks_rq.backend import Job
    from rq.worker import Worker

    class CountingWorker(Worker):
        """RQ counts the jobs a worker ran in Redis only, and forgets them when it stops."""

        ran = 0

        def register_death(self) -> None:
            self.refresh()  # type: ignore[no-untyped-call]
            self.ran = self.successful_job_count + self.failed_job_count
            super().register_death()  # type: ignore[no-untyped-call]

    worker = django_rq.get_worker(*queues, job_class=Job, worker_class=CountingWorker)
    # Abandoned jobs (their worker's heartbeat stopped) are looked for every minute, not ten.
    worker.maintenance_interval = 60
    heart = None
    if on_beat is not None:
        on_beat()
        heart = _Heart(on_beat)
        heart.start()
    try:
        worker.work(burst=burst, with_scheduler=True)
    finally:
        if heart is not None:
            heart.stopping.set()
    return WorkerReport(worker.name, "redis", queues, getattr(worker, "ran", 0), 0)
