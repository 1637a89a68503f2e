"""Scheduled backups (carevault.backup.tasks): a worker's heartbeat queues one into
CAREVAULT_BACKUP_DIR when none was queued within the period, and never without a directory."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from carevault.backup import tasks
from carevault.web.jobs.models import JobRun


def test_nothing_is_scheduled_without_a_backup_directory(db, settings):
    settings.BACKUP_DIR = ""
    assert tasks.schedule() is None
    assert not JobRun.objects.exists()


def test_a_backup_is_queued_once_per_period(
    db, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.BACKUP_DIR = str(tmp_path / "nightly")
    settings.BACKUP_EVERY_HOURS = 24
    settings.BACKUP_KEEP = 3
    with django_capture_on_commit_callbacks(execute=False):
        first = tasks.schedule()
        assert first is not None
        assert first.params == {"directory": str(tmp_path / "nightly"), "keep": 3}
        assert tasks.schedule() is None  # within the period
        later = timezone.now() + dt.timedelta(hours=24, seconds=1)
        JobRun.objects.filter(pk=first.pk).update(state="failed")
        second = tasks.schedule(now=later)
    assert second is not None
    assert JobRun.objects.filter(kind=tasks.KIND).count() == 2
