"""Scheduled backups as a background task (issue 16): ``backup.create`` writes one encrypted,
signed backup into ``CAREVAULT_BACKUP_DIR`` (keeping the newest ``CAREVAULT_BACKUP_KEEP``), and
:func:`schedule`, which a worker calls at every heartbeat, queues one once the last is older
than ``CAREVAULT_BACKUP_EVERY_HOURS``.

A killed backup leaves only a work directory that the next run sweeps away (:func:`ops.sweep`)
and no archive (the archive is written under a temporary name and renamed at the end): running
it again is the resume. Registered with the task queue from here, the layer above the web app
that owns backups (the web layer cannot import this one).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from django.conf import settings
from django.utils import timezone
from django_tasks import TaskContext, task

from carevault import config
from carevault.web.jobs import registry
from carevault.web.jobs.models import JobRun
from carevault.web.jobs.registry import Progress, tracked

from . import ops

KIND = "backup.create"


@task(takes_context=True, queue_name="long")
def create_backup(context: TaskContext, run_id: int, directory: str, keep: int) -> str:
    def work(progress: Progress) -> str:
        progress(0, 1)
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        ops.sweep(folder)
        made = ops.create(
            folder,
            data_dir=config.data_dir(),
            database_url=os.environ.get("DATABASE_URL", "").strip(),
            kek=config.master_key_provider().load(),
            keep=keep,
        )
        progress(1, 1)
        return f"{made.path.name} ({made.path.stat().st_size:,} bytes, {made.seconds:.1f} s)"

    return tracked(context, run_id, work)


registry.register(KIND, create_backup)


def schedule(now: dt.datetime | None = None) -> JobRun | None:
    """Queue a backup when one is due (none configured: never). The run queued last counts,
    whatever became of it: a failing backup is retried every period, not at every beat."""
    directory = str(getattr(settings, "BACKUP_DIR", "") or "")
    if not directory:
        return None
    now = now or timezone.now()
    every = dt.timedelta(hours=int(settings.BACKUP_EVERY_HOURS))
    last = JobRun.objects.filter(kind=KIND).order_by("-enqueued_at").first()
    if last is not None and last.enqueued_at > now - every:
        return None
    return registry.enqueue(
        KIND, {"directory": directory, "keep": int(settings.BACKUP_KEEP)}, once=True
    )
