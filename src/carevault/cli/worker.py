"""``carevault worker``: run background tasks (re-encryption, key rotation, retraining, audit
sealing) from the task queue (docs/operations.md, "Background jobs")."""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable

from carevault.cli._common import CommandError, Commands, add_command, emit
from carevault.cli._django import django_setup, require_database

BACKENDS = ("database", "redis")


def cmd_worker(args: argparse.Namespace) -> int:
    if args.backend:
        # Read by the settings at start-up: the worker must use the queue the servers use.
        os.environ["CAREVAULT_TASKS"] = args.backend
    django_setup()
    from django.conf import settings

    from carevault.web.jobs import worker

    mode = settings.TASKS_MODE
    if mode not in BACKENDS:
        raise CommandError(
            f"CAREVAULT_TASKS={mode} runs tasks in the process that queues them: no worker needed"
        )
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else []
    queues = queues or list(settings.TASK_QUEUES)
    unknown = sorted(set(queues) - set(settings.TASK_QUEUES))
    if unknown:
        raise CommandError(
            f"unknown queue {', '.join(unknown)} (queues: {', '.join(settings.TASK_QUEUES)})"
        )
    require_database()
    # Backups live a layer above the web app: registering their task here makes the kind known
    # to this worker, and its heartbeat queues one when CAREVAULT_BACKUP_DIR's schedule says so.
    from carevault.backup import tasks as backup_tasks

    scorer = _start_scorer(burst=args.burst)
    try:
        if mode == "database":
            report = worker.run_database_worker(
                queues, burst=args.burst, interval=args.interval, on_beat=backup_tasks.schedule
            )
        else:
            report = worker.run_rq_worker(queues, burst=args.burst, on_beat=backup_tasks.schedule)
    finally:
        scorer()
    emit(
        args,
        report.as_dict(),
        f"worker {report.worker_id} ({report.backend}) stopped after {report.tasks} task(s)",
    )
    return 0


def _start_scorer(*, burst: bool) -> Callable[[], None]:
    """With ``SECURITY_SCORING = "worker"`` the serving processes store the events that gate no
    attacker unscored, and workers score them: a thread beside the task loop (a burst worker
    scores what is pending once, at the end). Returns what stops it."""
    from django.conf import settings

    if not settings.SECURITY_EVENTS or str(settings.SECURITY_SCORING) != "worker":
        return lambda: None
    from carevault.web.securitycore import scorer

    if burst:

        def drain_once() -> None:
            scorer.drain_now()

        return drain_once
    stop = threading.Event()

    def score_until_stopped() -> None:
        from django.db import connections

        try:
            scorer.drain_forever(stop)
        finally:
            connections.close_all()  # this thread's own connections

    thread = threading.Thread(
        target=score_until_stopped, name="carevault-worker-scorer", daemon=True
    )
    thread.start()

    def stopper() -> None:
        stop.set()
        thread.join(timeout=10)

    return stopper


def register(commands: Commands) -> None:
    p = add_command(commands, "worker", cmd_worker, "run background tasks from the task queue")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="the queue (default: CAREVAULT_TASKS, else database)",
    )
    p.add_argument("--queues", help="comma-separated queues to take tasks from (default: all)")
    p.add_argument(
        "--burst", action="store_true", help="run what is queued, then exit (cron, tests)"
    )
    p.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds between looks at an empty database queue (default: 1)",
    )
