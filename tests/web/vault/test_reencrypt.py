"""Re-encryption under escalation: when the floor rises, what is stored below it is sealed again
under it; the job resumes after being killed, never overwrites a concurrent edit, leaves
tampered values alone, and one worker at a time holds it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from vault_policy_helpers import policy_proposing

from carevault.crypto import Suite, parse_header
from carevault.web.audit.models import AuditEntry
from carevault.web.clinic import actions as clinic
from carevault.web.clinic.models import ClinicalNote
from carevault.web.labs import actions as labs
from carevault.web.labs import storage
from carevault.web.vault import reencrypt
from carevault.web.vault.context import SYSTEM_WRITE
from carevault.web.vault.models import EncryptionDecision, JobStatus, ReencryptionJob
from carevault.web.vault.phi import PhiModel

PDF = b"%PDF-1.4\n" + b"scan " * 3000 + b"\n%%EOF\n"
TARGET = Suite.AES_256_GCM


def doctor_of(patient):
    return patient.care_team.get().doctor


def every_sealed_value() -> list[tuple[type[PhiModel], PhiModel, str, bytes]]:
    found = []
    for model in reencrypt.phi_models():
        for row in model._default_manager.all():
            for column in model.PHI_FIELDS:
                value = bytes(getattr(row, f"{column}_enc") or b"")
                if value:
                    found.append((model, row, column, value))
    return found


def below(target: Suite) -> int:
    return sum(1 for *_, v in every_sealed_value() if parse_header(v).suite.level < target.level)


@pytest.fixture
def weak_records(patients, users, monkeypatch):
    """Notes and a lab file written while the policy chose AES-128 for ordinary data, plus
    everything the demo cast already holds (sealed under the strongest suite)."""
    patient = patients["patient1"]
    with policy_proposing(monkeypatch, Suite.AES_128_GCM):
        notes = [
            clinic.do_add_note(doctor_of(patient), patient, body=f"Visit {i}") for i in range(7)
        ]
        request = labs.do_request_lab_test(doctor_of(patient), patient, test="Lipid panel")
        result = labs.do_submit_lab_result(
            users["labtech1"],
            request,
            values="LDL 2.9",
            uploads=[labs.upload_from_bytes("lipids.pdf", "application/pdf", PDF)],
        )
    return {"notes": notes, "file": result.files.get(), "patient": patient}


def test_a_job_brings_every_value_and_file_below_the_floor_up_to_it(
    weak_records, django_capture_on_commit_callbacks
):
    assert below(TARGET) >= 7
    job = reencrypt.request_job(TARGET, "floor raised: test")
    # Old files are removed once their batch commits (the test's transaction never does).
    with django_capture_on_commit_callbacks(execute=True):
        done = reencrypt.run(job.pk)
    assert done.status == JobStatus.DONE
    assert done.percent == 100
    assert below(TARGET) == 0
    assert done.failures == 0
    assert done.reencrypted >= 7 + 1
    assert done.scanned == done.total
    for note, text in zip(weak_records["notes"], [f"Visit {i}" for i in range(7)], strict=True):
        stored = ClinicalNote.objects.get(pk=note.pk)
        assert stored.unseal("body") == text
        logged = EncryptionDecision.objects.get(table="clinic_clinicalnote", row=str(note.pk))
        assert (logged.suite, logged.source) == ("AES-256-GCM", "reencrypt")
        assert "floor raised: test" in logged.reason
    lab_file = type(weak_records["file"]).objects.get(pk=weak_records["file"].pk)
    assert lab_file.storage_name != weak_records["file"].storage_name
    assert storage.sealing_suite(lab_file.storage_name) is TARGET
    assert not (storage.upload_dir() / weak_records["file"].storage_name).exists()
    assert (
        b"".join(storage.open_decrypted(lab_file.patient_id, lab_file.pk, lab_file.storage_name))
        == PDF
    )
    entry = AuditEntry.objects.filter(action="keys.reencrypt").latest("seq")
    assert entry.details["reencrypted"] == done.reencrypted


def test_a_job_killed_midway_resumes_from_its_last_batch_and_loses_nothing(
    weak_records, monkeypatch
):
    job = reencrypt.request_job(TARGET, "floor raised")
    first = reencrypt.run(job.pk, batch=2, max_batches=3)
    assert first.status == JobStatus.RUNNING
    assert 0 < first.scanned < first.total
    assert 0 < first.percent < 100
    # The next batch dies half-way (the worker is killed): its updates roll back with it.
    calls = {"n": 0}
    real = reencrypt._reencrypt_row

    def dies_on_the_second_row(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(reencrypt, "_reencrypt_row", dies_on_the_second_row)
    with pytest.raises(KeyboardInterrupt):
        reencrypt.run(job.pk, owner="doomed worker", batch=2)
    monkeypatch.setattr(reencrypt, "_reencrypt_row", real)
    after_kill = ReencryptionJob.objects.get(pk=job.pk)
    assert after_kill.scanned == first.scanned  # the killed batch did not count
    # The dead worker's lease runs out; the next worker finishes the job.
    ReencryptionJob.objects.filter(pk=job.pk).update(lease_until=timezone.now())
    done = reencrypt.run(job.pk, owner="next worker")
    assert done.status == JobStatus.DONE
    assert below(TARGET) == 0
    texts = sorted(ClinicalNote.objects.get(pk=n.pk).unseal("body") for n in weak_records["notes"])
    assert texts == sorted(f"Visit {i}" for i in range(7))


def test_a_concurrent_edit_is_never_overwritten(weak_records, monkeypatch):
    note = weak_records["notes"][0]
    stale = ClinicalNote.objects.get(pk=note.pk)  # what the job read
    # Meanwhile the doctor edits the note (sealed under the current policy: still AES-128).
    with policy_proposing(monkeypatch, Suite.AES_128_GCM):
        fresh = ClinicalNote.objects.get(pk=note.pk)
        fresh.seal(SYSTEM_WRITE, body="Edited while the job ran")
        fresh.save()
    counts = reencrypt._reencrypt_row(ClinicalNote, stale, TARGET, "floor raised")
    stored = ClinicalNote.objects.get(pk=note.pk)
    assert stored.unseal("body") == "Edited while the job ran"
    assert parse_header(bytes(stored.body_enc)).suite is TARGET
    assert counts.reencrypted == 1


def test_a_tampered_value_is_left_as_it_is_and_counted(weak_records):
    note, other = weak_records["notes"][0], weak_records["notes"][1]
    swapped = bytes(ClinicalNote.objects.get(pk=other.pk).body_enc)
    ClinicalNote.objects.filter(pk=note.pk).update(body_enc=swapped)
    done = reencrypt.run(reencrypt.request_job(TARGET, "floor raised").pk)
    assert done.status == JobStatus.DONE
    assert done.failures == 1
    assert bytes(ClinicalNote.objects.get(pk=note.pk).body_enc) == swapped


def test_one_worker_at_a_time_holds_a_job(weak_records):
    job = reencrypt.request_job(TARGET, "floor raised")
    reencrypt.run(job.pk, owner="a", batch=2, max_batches=1)
    ReencryptionJob.objects.filter(pk=job.pk).update(
        lease_owner="a", lease_until=timezone.now() + dt.timedelta(minutes=2)
    )
    with pytest.raises(reencrypt.JobBusy):
        reencrypt.run(job.pk, owner="b")
    ReencryptionJob.objects.filter(pk=job.pk).update(lease_until=timezone.now())
    assert reencrypt.run(job.pk, owner="b").status == JobStatus.DONE


def test_a_higher_floor_supersedes_an_open_job_and_a_lower_one_reuses_it(db):
    low = reencrypt.request_job(Suite.AES_192_GCM, "first")
    high = reencrypt.request_job(Suite.HYBRID_X25519_AES_256_GCM, "second")
    assert high.pk != low.pk
    assert ReencryptionJob.objects.get(pk=low.pk).status == JobStatus.SUPERSEDED
    assert reencrypt.request_job(Suite.AES_256_GCM, "third").pk == high.pk
    assert reencrypt.open_job().pk == high.pk
