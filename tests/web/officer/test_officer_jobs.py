"""The officer's Background jobs page: running and recent jobs with their progress (polled while
one is open), the workers alive, and retrying a failed job (audited; only a failed one, once)."""

from __future__ import annotations

from django.urls import reverse

from carevault.web.audit.models import AuditEntry
from carevault.web.jobs.models import JobRun, JobState, WorkerBeat

PAGE = reverse("officer:jobs")


def retry_url(run: JobRun) -> str:
    return reverse("officer:retry_job", args=[run.pk])


def test_it_shows_each_jobs_progress_and_polls_while_one_is_open(client_for):
    JobRun.objects.create(
        kind="reencrypt.job", params={"job_id": 7}, state="running", done=30, total=120
    )
    JobRun.objects.create(kind="audit.seal", state="done", summary="12 entries in 1 batch(es)")
    html = client_for("admin").get(PAGE).content.decode()
    assert "reencrypt.job" in html
    assert "30 / 120" in html
    assert 'aria-valuenow="25"' in html
    assert "12 entries in 1 batch(es)" in html
    assert 'hx-trigger="every 3s"' in html


def test_nothing_open_stops_the_polling_and_says_when_no_worker_runs(client_for):
    JobRun.objects.create(kind="audit.seal", state="done")
    table = client_for("admin").get(reverse("officer:jobs_table")).content.decode()
    assert "hx-trigger" not in table
    assert "immediate" in table  # the tests' backend: no worker needed


def test_it_lists_the_workers_alive(client_for, settings):
    settings.TASKS_MODE = "database"
    WorkerBeat.objects.create(
        worker_id="clinic-host:4242:1@abcdef12", backend="database", queues="default"
    )
    html = client_for("admin").get(PAGE).content.decode()
    assert "clinic-host:4242:1@abcdef12" in html
    assert "1 worker" in html


def test_retrying_a_failed_job_queues_it_again_and_is_audited(
    client_for, django_capture_on_commit_callbacks
):
    failed = JobRun.objects.create(
        kind="audit.seal", state=JobState.FAILED, error="OperationalError"
    )
    assert "Retry" in client_for("admin").get(PAGE).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        answer = client_for("admin").post(retry_url(failed), HTTP_HX_REQUEST="true")
    assert answer.status_code == 200
    again = JobRun.objects.get(retry_of=failed)
    assert (again.state, again.requested_by) == (JobState.DONE, "admin")  # the immediate backend
    assert f"queued again as job {again.pk}" in answer.content.decode()
    entry = AuditEntry.objects.filter(action="jobs.retry").latest("seq")
    assert (entry.actor, entry.target_id) == ("admin", str(failed.pk))
    assert entry.details["retry"] == again.pk


def test_a_job_that_did_not_fail_or_was_retried_already_is_not_queued_again(client_for):
    done = JobRun.objects.create(kind="audit.seal", state=JobState.DONE)
    failed = JobRun.objects.create(kind="audit.seal", state=JobState.FAILED)
    JobRun.objects.create(kind="audit.seal", state=JobState.QUEUED, retry_of=failed)
    officer = client_for("admin")
    first = officer.post(retry_url(done), HTTP_HX_REQUEST="true").content.decode()
    assert "has not failed" in first
    second = officer.post(retry_url(failed), HTTP_HX_REQUEST="true").content.decode()
    assert "retried already" in second
    assert JobRun.objects.count() == 3
    assert not AuditEntry.objects.filter(action="jobs.retry").exists()


def test_only_officers_see_or_retry_jobs(client_for):
    failed = JobRun.objects.create(kind="audit.seal", state=JobState.FAILED)
    doctor = client_for("doctor1")
    assert doctor.get(PAGE).status_code == 403
    assert doctor.post(retry_url(failed)).status_code == 403
    assert not JobRun.objects.filter(retry_of=failed).exists()


def test_an_officer_starts_a_job_from_the_page_and_it_is_audited(
    client_for, django_capture_on_commit_callbacks
):
    officer = client_for("admin")
    assert "Seal the audit log now" in officer.get(PAGE).content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        answer = officer.post(reverse("officer:queue_job"), {"kind": "audit.seal"})
    assert answer.status_code == 302
    run = JobRun.objects.get(kind="audit.seal")
    assert run.requested_by == "admin"
    entry = AuditEntry.objects.filter(action="jobs.queue").latest("seq")
    assert (entry.actor, entry.target_id, entry.details["kind"]) == (
        "admin",
        str(run.pk),
        "audit.seal",
    )


def test_an_officer_cannot_start_a_kind_that_is_not_offered(client_for):
    officer = client_for("admin")
    answer = officer.post(
        reverse("officer:queue_job"), {"kind": "keys.rotate_patient"}, follow=True
    )
    assert "no such background job" in answer.content.decode()
    assert not JobRun.objects.exists()
    assert (
        client_for("doctor1").post(reverse("officer:queue_job"), {"kind": "audit.seal"}).status_code
        == 403
    )
