"""The security officer's encryption page: the policy in force, the floor, each record's suite
and reason, re-encryption jobs with their progress, and starting one (audited)."""

from __future__ import annotations

from django.urls import reverse

from carevault.web.audit.models import AuditEntry
from carevault.web.clinic import actions as clinic
from carevault.web.clinic.models import Patient
from carevault.web.securitycore import state
from carevault.web.vault import reencrypt
from carevault.web.vault.models import EncryptionDecision, JobStatus, ReencryptionJob

PAGE = reverse("officer:encryption")


def test_it_shows_each_records_suite_and_why_without_any_patient_data(client_for, patients):
    patient = patients["patient1"]
    note = clinic.do_add_note(
        patient.care_team.get().doctor, patient, body="Tremor worse in the mornings"
    )
    page = client_for("admin").get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert str(note.pk) in html
    logged = EncryptionDecision.objects.get(row=str(note.pk))
    assert logged.reason in html
    assert "no trained policy" in html  # the tests' data directory has none
    assert "Tremor" not in html
    assert "Alice" not in html  # a patient's name never appears


def test_it_finds_one_records_decisions_by_its_id(client_for, patients):
    patient = patients["patient2"]
    note = clinic.do_add_note(patient.care_team.get().doctor, patient, body="x")
    page = client_for("admin").get(PAGE, {"record": str(note.pk)})
    body = page.content.decode().split('id="decisions"')[1].split("<tbody>")[1]
    assert body.count("<tr>") == 1
    assert str(note.pk) in body


def test_a_bad_filter_is_explained_and_not_applied(client_for, patients):
    page = client_for("admin").get(PAGE, {"record": "not-a-uuid", "suite": "DES-CBC"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "a record id is a UUID" in html
    assert "unknown suite" in html


def test_starting_a_reencryption_needs_a_raised_floor(client_for, users):
    response = client_for("admin").post(reverse("officer:start_reencryption"), follow=True)
    assert "no floor is raised" in response.content.decode()
    assert not ReencryptionJob.objects.exists()


def test_an_officer_starts_a_reencryption_to_the_raised_floor_and_sees_its_progress(
    client_for, patients
):
    state.raise_floor("RSA-3072-OAEP-AES-256-GCM", seconds=600, reason="incident 7")
    admin = client_for("admin")
    response = admin.post(reverse("officer:start_reencryption"), follow=True)
    assert response.status_code == 200
    job = ReencryptionJob.objects.get()
    assert job.target_suite == "RSA-3072-OAEP-AES-256-GCM"
    assert f"Re-encryption job {job.pk}" in response.content.decode()
    entry = AuditEntry.objects.filter(action="keys.reencrypt_started").latest("seq")
    assert entry.details == {"job": job.pk, "suite": "RSA-3072-OAEP-AES-256-GCM"}
    # The jobs table polls while the job is open, and shows how far it got.
    reencrypt.run(job.pk, batch=1, max_batches=1)
    partial = admin.get(reverse("officer:reencryption_jobs")).content.decode()
    assert 'hx-trigger="every 5s"' in partial
    assert f"1 / {job.total} records" in partial
    reencrypt.run(job.pk)
    done = admin.get(reverse("officer:reencryption_jobs")).content.decode()
    assert ReencryptionJob.objects.get().status == JobStatus.DONE
    assert "every 5s" not in done  # nothing open: it stops polling
    assert "100%" in done
    assert Patient.objects.count() == 3


def test_others_cannot_start_a_reencryption(client_for):
    state.raise_floor("AES-256-GCM", seconds=600, reason="incident")
    for username in ("doctor1", "patient1", "labtech1"):
        response = client_for(username).post(reverse("officer:start_reencryption"))
        assert response.status_code in (302, 403, 404)
    assert not ReencryptionJob.objects.exists()
