"""A dead worker's task goes back to the queue (carevault.web.jobs.recovery), on the database
backend: django_tasks_db alone would leave it RUNNING for ever. (The whole story, with real
worker processes and a SIGKILL, is test_worker_kill.py.)"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess

import pytest
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from carevault.web.jobs import recovery, registry, worker
from carevault.web.jobs.models import JobRun, JobState, WorkerBeat
from carevault.web.vault.reencrypt import _boot_id


@pytest.fixture
def database_queue(db, settings):
    settings.TASKS = {
        "default": {
            "BACKEND": "django_tasks_db.DatabaseBackend",
            "QUEUES": settings.TASK_QUEUES,
        }
    }
    settings.TASKS_MAX_ATTEMPTS = 3
    settings.TASKS_DEAD_AFTER_SECONDS = 60


def dead_process_worker_id() -> str:
    """The id a worker of this machine had, whose process has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return f"{socket.gethostname()[:30]}:{child.pid}:1@{_boot_id()}"


def queued_run(django_capture_on_commit_callbacks) -> tuple[JobRun, DBTaskResult]:
    with django_capture_on_commit_callbacks(execute=True):
        run = registry.enqueue("audit.seal")
    assert run is not None
    task = DBTaskResult.objects.get()
    return JobRun.objects.get(pk=run.pk), task


def claimed_by(task: DBTaskResult, *workers: str) -> None:
    task.status = TaskResultStatus.RUNNING
    task.started_at = timezone.now()
    task.worker_ids = list(workers)
    task.save()
    JobRun.objects.update(state=JobState.RUNNING, attempts=len(workers), worker=workers[-1])


def test_a_task_of_a_worker_whose_process_is_gone_is_queued_again_at_once(
    database_queue, django_capture_on_commit_callbacks
):
    run, task = queued_run(django_capture_on_commit_callbacks)
    dead = dead_process_worker_id()
    recovery.beat(dead, backend="database", queues=["default"])  # it beat a moment ago
    claimed_by(task, dead)
    done = recovery.recover()
    assert done.requeued == [str(task.pk)]
    task.refresh_from_db()
    assert task.status == TaskResultStatus.READY
    run.refresh_from_db()
    assert run.state == JobState.QUEUED
    assert "died" in run.error


def test_a_task_of_a_live_worker_is_left_alone(database_queue, django_capture_on_commit_callbacks):
    _, task = queued_run(django_capture_on_commit_callbacks)
    elsewhere = "another-host:4242:1@abcdef12"
    recovery.beat(elsewhere, backend="database", queues=["default"])
    claimed_by(task, elsewhere)
    assert recovery.recover().requeued == []
    task.refresh_from_db()
    assert task.status == TaskResultStatus.RUNNING


def test_a_worker_silent_for_longer_than_the_dead_interval_is_dead(
    database_queue, django_capture_on_commit_callbacks
):
    _, task = queued_run(django_capture_on_commit_callbacks)
    elsewhere = "another-host:4242:1@abcdef12"
    recovery.beat(elsewhere, backend="database", queues=["default"])
    WorkerBeat.objects.update(beat_at=timezone.now() - dt.timedelta(seconds=61))
    claimed_by(task, elsewhere)
    assert recovery.recover().requeued == [str(task.pk)]


def test_a_task_that_killed_its_worker_too_often_fails_for_good(
    database_queue, django_capture_on_commit_callbacks
):
    run, task = queued_run(django_capture_on_commit_callbacks)
    claimed_by(task, *(dead_process_worker_id() for _ in range(3)))
    done = recovery.recover()
    assert done.failed == [str(task.pk)]
    task.refresh_from_db()
    assert task.status == TaskResultStatus.FAILED
    assert task.exception_class_path == recovery.LOST
    run.refresh_from_db()
    assert run.state == JobState.FAILED
    assert run.error.startswith("WorkerLost")


def test_a_worker_that_never_beat_is_judged_by_how_long_its_task_has_run(
    database_queue, django_capture_on_commit_callbacks
):
    _, task = queued_run(django_capture_on_commit_callbacks)
    claimed_by(task, "another-host:1:1@abcdef12")
    assert recovery.recover().requeued == []
    DBTaskResult.objects.update(started_at=timezone.now() - dt.timedelta(seconds=61))
    assert recovery.recover().requeued == [str(task.pk)]


def test_housekeeping_beats_and_hands_over_a_run_that_was_recorded_but_never_queued(
    database_queue, django_capture_on_commit_callbacks
):
    # The process died between its commit and the hand-over: a run without a task.
    run = JobRun.objects.create(
        kind="audit.seal", enqueued_at=timezone.now() - dt.timedelta(seconds=61)
    )
    fresh = JobRun.objects.create(kind="audit.seal")  # its hand-over may be under way
    worker.housekeeping("this-host:1:1@abcdef12", ["default", "long"])
    assert WorkerBeat.objects.filter(worker_id="this-host:1:1@abcdef12").exists()
    task = DBTaskResult.objects.get()
    assert task.status == TaskResultStatus.READY
    assert task.args_kwargs["args"] == [run.pk]
    assert JobRun.objects.get(pk=run.pk).task_id == str(task.pk)
    assert JobRun.objects.get(pk=fresh.pk).task_id == ""
    # Looking again does not queue it twice.
    worker.housekeeping("this-host:1:1@abcdef12", ["default", "long"])
    assert DBTaskResult.objects.count() == 1


def test_a_job_asked_for_again_while_its_run_waits_is_not_queued_twice(
    database_queue, settings, patients, django_capture_on_commit_callbacks
):
    from carevault.crypto import Suite
    from carevault.web.vault import reencrypt

    settings.REENCRYPT_IN_BACKGROUND = True
    with django_capture_on_commit_callbacks(execute=True):
        first = reencrypt.escalate(Suite.AES_256_GCM, "first")
        again = reencrypt.escalate(Suite.AES_256_GCM, "again")
    assert first.pk == again.pk
    assert JobRun.objects.filter(kind="reencrypt.job").count() == 1
    assert DBTaskResult.objects.count() == 1


def test_a_job_another_live_worker_holds_is_looked_at_again_when_its_lease_would_end(
    database_queue, settings, patients, django_capture_on_commit_callbacks
):
    from django_tasks import TaskContext

    from carevault.crypto import Suite
    from carevault.web.jobs import tasks
    from carevault.web.vault import reencrypt
    from carevault.web.vault.models import ReencryptionJob

    settings.REENCRYPT_IN_BACKGROUND = True
    with django_capture_on_commit_callbacks(execute=True):
        job = reencrypt.escalate(Suite.AES_256_GCM, "held elsewhere")
    until = timezone.now() + dt.timedelta(seconds=90)
    ReencryptionJob.objects.filter(pk=job.pk).update(
        lease_owner="another-host:1:1@abcdef12", lease_until=until, status="running"
    )
    run = JobRun.objects.get(kind="reencrypt.job")
    queued = DBTaskResult.objects.get()
    summary = tasks.reencrypt_job.call(
        TaskContext(task_result=queued.task_result), run.pk, job_id=job.pk
    )
    assert "held by another worker" in summary
    run.refresh_from_db()
    assert run.state == JobState.QUEUED
    later = DBTaskResult.objects.exclude(pk=queued.pk).get()
    assert later.run_after == until
    assert later.args_kwargs == {"args": [run.pk], "kwargs": {"job_id": job.pk}}
    assert run.task_id == str(later.pk)
