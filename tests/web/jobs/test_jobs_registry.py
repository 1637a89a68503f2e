"""Queueing background work (carevault.web.jobs.registry, tasks): a run is recorded in the
caller's transaction and queued only once it commits, records its attempts and progress, keeps
no value in its error, and the vault and the audit sealer hand their work to the queue. (Tests
run the immediate backend: a task runs when its enqueueing transaction commits.)"""

from __future__ import annotations

import pytest
from django.db import transaction

from carevault.crypto import Suite
from carevault.web.audit import sealing
from carevault.web.audit.log import record
from carevault.web.audit.models import AuditEntry
from carevault.web.jobs import registry, tasks
from carevault.web.jobs.models import JobRun, JobState
from carevault.web.vault import reencrypt, service
from carevault.web.vault.models import JobStatus, ReencryptionJob


def test_a_run_is_queued_only_once_its_transaction_commits(
    users, django_capture_on_commit_callbacks
):
    record("test.event", actor=users["doctor1"])
    with django_capture_on_commit_callbacks(execute=False) as pending:
        run = registry.enqueue("audit.seal")
    assert run is not None
    assert JobRun.objects.get(pk=run.pk).state == JobState.QUEUED
    assert AuditEntry.objects.filter(batch__isnull=True).exists()
    for callback in pending:
        callback()
    done = JobRun.objects.get(pk=run.pk)
    assert (done.state, done.attempts, done.error) == (JobState.DONE, 1, "")
    assert done.task_id
    assert done.done >= 1
    assert "entries" in done.summary
    assert not AuditEntry.objects.filter(batch__isnull=True).exists()


def test_a_rolled_back_transaction_queues_nothing(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as pending, transaction.atomic():
        registry.enqueue("audit.seal")
        transaction.set_rollback(True)
    assert pending == []
    assert not JobRun.objects.exists()


def test_a_failed_run_keeps_the_errors_class_and_never_its_message(
    db, monkeypatch, django_capture_on_commit_callbacks
):
    def leaks(**kwargs):
        raise ValueError("Alice Example, born 1961-04-02")

    monkeypatch.setattr(sealing, "seal", leaks)
    with django_capture_on_commit_callbacks(execute=True):
        run = registry.enqueue("audit.seal")
    failed = JobRun.objects.get(pk=run.pk)
    assert (failed.state, failed.error) == (JobState.FAILED, "ValueError")
    assert failed.finished_at is not None
    assert "Alice" not in failed.error + failed.summary


def test_an_unknown_kind_is_refused(db):
    with pytest.raises(registry.UnknownJob):
        registry.enqueue("no.such.job")


def test_the_sealer_is_queued_once_while_a_run_waits(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        first = registry.enqueue("audit.seal", once=True)
        second = registry.enqueue("audit.seal", once=True)
    assert first is not None
    assert second is None
    assert JobRun.objects.filter(kind="audit.seal").count() == 1


def test_a_due_seal_after_a_commit_runs_as_a_task_not_in_the_request(
    users, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.AUDIT_SEAL_CHECK_SECONDS = -1
    settings.AUDIT_SEAL_AFTER_SECONDS = 0
    monkeypatch.setattr(sealing, "_last_look", float("-inf"))
    with django_capture_on_commit_callbacks(execute=True):
        record("test.event", actor=users["doctor1"])
    run = JobRun.objects.get(kind="audit.seal")
    assert run.state == JobState.DONE
    assert not AuditEntry.objects.filter(batch__isnull=True).exists()


def test_a_raised_floor_queues_its_reencryption_job_which_runs_to_its_end(
    patients, settings, django_capture_on_commit_callbacks
):
    settings.REENCRYPT_IN_BACKGROUND = True
    with django_capture_on_commit_callbacks(execute=True):
        job = reencrypt.escalate(Suite.AES_256_GCM, "test floor")
    run = JobRun.objects.get(kind="reencrypt.job")
    assert run.params == {"job_id": job.pk}
    assert (run.state, run.attempts) == (JobState.DONE, 1)
    finished = ReencryptionJob.objects.get(pk=job.pk)
    assert finished.status == JobStatus.DONE
    assert run.done == run.total == finished.total


def test_with_background_re_encryption_off_a_raised_floor_queues_nothing(
    db, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        reencrypt.escalate(Suite.AES_256_GCM, "test floor")
    assert not JobRun.objects.exists()


def test_a_patient_key_rotation_delivered_twice_rotates_once(
    patients, django_capture_on_commit_callbacks
):
    patient_id = str(patients["patient1"].pk)
    before = service.patient_keyring(patient_id).primary.version
    with django_capture_on_commit_callbacks(execute=True):
        tasks.enqueue_patient_rotation(patient_id, requested_by="admin")
    run = JobRun.objects.get(kind="keys.rotate_patient")
    after = service.patient_keyring(patient_id).primary.version
    assert after > before
    assert AuditEntry.objects.filter(action="keys.patient_rotate").count() == 1
    # The queue delivers the same task again (a worker died after the commit): nothing more.
    JobRun.objects.filter(pk=run.pk).update(state=JobState.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.rotate_patient_key.enqueue(run.pk, **run.params)
    assert service.patient_keyring(patient_id).primary.version == after
    assert JobRun.objects.get(pk=run.pk).summary == f"already rotated (v{after})"
    assert AuditEntry.objects.filter(action="keys.patient_rotate").count() == 1
