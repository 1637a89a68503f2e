"""Key jobs that are safe to kill at any instant (issue 13): a re-encrypted lab file replaces the
old one only once the batch commits, the sweep removes what a kill left and nothing else, a dead
worker's lease is taken over at once, and the fault-injection run (``carevault bench
killsafety``) SIGKILLs `keys reencrypt` and `keys rotate` at every kind of instant and finds
nothing lost or tampered after resuming."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone
from vault_policy_helpers import policy_proposing

from carevault.crypto import Suite
from carevault.web.labs import actions as labs
from carevault.web.labs import storage
from carevault.web.labs.models import LabFile
from carevault.web.vault import reencrypt, sweep
from carevault.web.vault.models import JobStatus, ReencryptionJob

PDF = b"%PDF-1.4\n" + b"scan " * 500 + b"\n%%EOF\n"
TARGET = Suite.AES_256_GCM
EXE = Path(sys.executable).parent / "carevault"


@pytest.fixture
def weak_file(patients, users, monkeypatch) -> LabFile:
    patient = patients["patient1"]
    doctor = patient.care_team.get().doctor
    with policy_proposing(monkeypatch, Suite.AES_128_GCM):
        request = labs.do_request_lab_test(doctor, patient, test="Lipid panel")
        result = labs.do_submit_lab_result(
            users["labtech1"],
            request,
            values="LDL 2.9",
            uploads=[labs.upload_from_bytes("lipids.pdf", "application/pdf", PDF)],
        )
    return result.files.get()


def content(lab_file: LabFile) -> bytes:
    fresh = LabFile.objects.get(pk=lab_file.pk)
    return b"".join(storage.open_decrypted(fresh.patient_id, fresh.pk, fresh.storage_name))


def test_a_rolled_back_batch_leaves_the_old_file_its_record_still_names(weak_file):
    old = weak_file.storage_name
    with transaction.atomic():
        assert weak_file.reencrypt_attachments(TARGET, "floor raised") == (1, 0, 0)
        transaction.set_rollback(True)  # the batch dies before its commit
    assert LabFile.objects.get(pk=weak_file.pk).storage_name == old
    assert (storage.upload_dir() / old).exists()
    assert content(weak_file) == PDF


def test_the_old_file_goes_only_once_the_new_name_is_committed(
    weak_file, django_capture_on_commit_callbacks
):
    old = weak_file.storage_name
    with django_capture_on_commit_callbacks(execute=False) as pending:
        with transaction.atomic():
            weak_file.reencrypt_attachments(TARGET, "floor raised")
        assert (storage.upload_dir() / old).exists()  # not yet committed: still needed
    for callback in pending:
        callback()
    assert not (storage.upload_dir() / old).exists()
    assert content(weak_file) == PDF


def test_the_sweep_removes_unreferenced_files_and_interrupted_writes_only(weak_file):
    uploads = storage.upload_dir()
    orphan = uploads / "0123456789abcdef0123456789abcdef.cvs"
    orphan.write_bytes(b"the new file of a batch that rolled back")
    partial = uploads / ".abc.cvs.xyz.part"
    partial.write_bytes(b"half a file")
    young = sweep.sweep(older_than=3600)
    assert orphan.name not in young.orphan_files  # could be an upload not yet committed
    assert orphan.exists()
    report = sweep.sweep(older_than=0)
    # (Files of other tests, whose rows rolled back with their transactions, go too.)
    assert orphan.name in report.orphan_files
    assert weak_file.storage_name not in report.orphan_files
    assert any(p.endswith(partial.name) for p in report.partial_writes)
    assert not orphan.exists()
    assert not partial.exists()
    assert (uploads / weak_file.storage_name).exists()
    assert content(weak_file) == PDF


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    return int(done.stdout)


def owner_with_pid(pid: int) -> str:
    return reencrypt.owner_name().replace(f":{os.getpid()}:", f":{pid}:", 1)


def test_a_dead_workers_lease_is_taken_over_at_once(weak_file):
    job = reencrypt.request_job(TARGET, "floor raised")
    ReencryptionJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING,
        lease_owner=owner_with_pid(dead_pid()),
        lease_until=timezone.now() + dt.timedelta(minutes=2),
    )
    assert reencrypt.run(job.pk).status == JobStatus.DONE


def test_a_lease_of_a_live_process_or_another_host_is_waited_out(weak_file):
    job = reencrypt.request_job(TARGET, "floor raised")
    parent = owner_with_pid(os.getppid())
    elsewhere = f"another-host:{dead_pid()}:1@{reencrypt.owner_name().rpartition('@')[2]}"
    for holder in (parent, elsewhere, "old-style owner"):
        assert not reencrypt.holder_is_gone(holder)
        ReencryptionJob.objects.filter(pk=job.pk).update(
            status=JobStatus.RUNNING,
            lease_owner=holder,
            lease_until=timezone.now() + dt.timedelta(minutes=2),
        )
        with pytest.raises(reencrypt.JobBusy):
            reencrypt.run(job.pk)
    assert socket.gethostname()  # the owner names this host


@pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")),
    reason="its processes run on a SQLite data directory of their own: the same under unit-pg",
)
def test_sigkilled_key_jobs_resume_with_nothing_lost_or_tampered():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CAREVAULT_DATA_DIR")}
    done = subprocess.run(
        [EXE, "bench", "killsafety", "--quick", "--points", "14", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    figures = json.loads(done.stdout)
    assert figures["killed"] == figures["points"] == 14
    assert (figures["lost"], figures["tampered"]) == (0, 0), figures
    assert (figures["resume_failures"], figures["extra_master_versions"]) == (0, 0)
    assert figures["orphans_after_sweep"] == 0
    # Every kind of instant was tried: records, commits, files, every store's keys, the master.
    assert {"reencrypt.file-written", "reencrypt.before-commit", "rotate.master-saved"} <= set(
        figures["kill_kinds"]
    )
    assert figures["checked"]["files"] > 0
    assert figures["checked"]["outbox"] > 0
