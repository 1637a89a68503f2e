"""The audit log's batches are anchored outside the database: signed checkpoints show a wiped,
truncated, rewritten or restored-from-backup log, and a forged checkpoint, although the batches
in the database are consistent among themselves."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from django.db import connection

from carevault.modelstore.anchor import CHECKPOINTS, Anchor
from carevault.web.audit import anchor, sealing
from carevault.web.audit.log import record, verify_chain
from carevault.web.audit.models import AuditBatch, AuditEntry
from carevault.web.vault import service


def _sql(statement: str, *params: object) -> None:
    # An insider with SQL access does not go through the append-only model.
    with connection.cursor() as cursor:
        cursor.execute(statement, list(params))


def _rewind_to(number: int) -> None:
    """Delete every batch after ``number`` and the entries they sealed (and any unsealed): a
    consistent, shorter log, which the batches alone accept."""
    _sql("DELETE FROM audit_auditentry WHERE batch > %s OR batch IS NULL", number)
    _sql("DELETE FROM audit_auditbatch WHERE number > %s", number)


def _last_batch() -> AuditBatch:
    return AuditBatch.objects.order_by("-number").first()


def test_a_seal_anchors_each_batch_with_its_hash_count_and_a_signature(db):
    sealing.seal()
    written = anchor.latest_checkpoint()
    batch = _last_batch()
    assert (written["batch"], written["hash"]) == (batch.number, batch.hash)
    assert written["count"] == AuditEntry.objects.count() == batch.total
    assert written["seq"] == AuditEntry.objects.order_by("-seq").first().seq
    assert written["signature"]
    assert anchor.checkpoint_file().name == CHECKPOINTS.name


def test_an_intact_log_agrees_with_its_checkpoints(users):
    sealing.seal()
    record("test.event", actor=users["doctor1"])
    report = verify_chain()
    assert report.ok, report.problems
    assert report.unsealed == 1
    sealing.seal()
    report = verify_chain()
    assert report.ok, report.problems
    assert (report.unsealed, report.sealed) == (0, report.entries)


def test_deleting_every_entry_and_batch_is_reported_as_a_wipe(db):
    sealing.seal()
    _sql("DELETE FROM audit_auditentry")
    _sql("DELETE FROM audit_auditbatch")
    report = verify_chain()
    assert report.entries == 0
    assert not report.ok
    assert "the audit log is empty but a signed checkpoint" in report.problems[0]


def test_a_truncated_log_with_its_batches_removed_is_reported(users):
    sealing.seal()
    for _ in range(3):
        record("test.event", actor=users["doctor1"])
    sealing.seal()
    last = _last_batch().number
    _rewind_to(last - 1)
    problems = verify_chain().problems
    assert any(f"last batch is {last - 1}" in p and f"recorded batch {last}" in p for p in problems)


def test_a_rewound_log_that_grew_again_is_reported_and_never_sealed_over(users):
    sealing.seal()
    for _ in range(3):
        record("test.event", actor=users["doctor1"])
    sealing.seal()
    last = _last_batch().number
    _rewind_to(last - 1)
    for _ in range(2):  # the log grows past the checkpoint again, but differently
        record("test.event", actor=users["doctor1"])
    # The sealer will not give the new entries the anchored batch's number.
    assert sealing.seal().refused
    assert _last_batch().number == last - 1
    problems = verify_chain().problems
    assert any(f"recorded batch {last}" in p for p in problems)


def test_a_batch_rewritten_under_an_anchored_number_is_reported(users):
    sealing.seal()
    record("test.event", actor=users["doctor1"])
    sealing.seal()
    last = _last_batch()
    checkpoint = anchor.latest_checkpoint()
    _sql("UPDATE audit_auditbatch SET hash = %s WHERE number = %s", "f" * 64, last.number)
    problems = verify_chain().problems
    assert (
        f"batch {last.number} is not the one a signed checkpoint of {checkpoint['at']} recorded "
        "(rewritten)"
    ) in problems


def test_a_restored_older_database_is_reported(users, tmp_path):
    # A backup of the database taken before the last batch, put back: the checkpoint file
    # outside the database remembers more.
    sealing.seal()
    record("test.event", actor=users["doctor1"])
    sealing.seal()
    last = _last_batch().number
    _rewind_to(last - 1)  # exactly the state the older backup held
    assert not verify_chain().ok


def test_reordered_entries_are_reported(db):
    sealing.seal()
    _sql("UPDATE audit_auditentry SET seq = -1 WHERE seq = 4")
    _sql("UPDATE audit_auditentry SET seq = 4 WHERE seq = 5")
    _sql("UPDATE audit_auditentry SET seq = 5 WHERE seq = -1")
    problems = verify_chain().problems
    assert "entry 4 was altered" in problems
    assert "entry 5 was altered" in problems


def test_a_forged_checkpoint_is_reported_and_ignored(db):
    sealing.seal()
    written = anchor.latest_checkpoint()
    forged = {**written, "batch": written["batch"] + 5, "count": written["count"] + 50}
    with anchor.checkpoint_file().open("a") as out:
        out.write(json.dumps(forged) + "\n")
    problems = verify_chain().problems
    lines = len(anchor.checkpoint_file().read_text().splitlines())
    assert problems == [f"local checkpoint line {lines}: the signature does not verify (forged)"]


def test_an_edited_batch_in_the_database_is_reported(db):
    sealing.seal()
    last = _last_batch()
    _sql("UPDATE audit_auditbatch SET count = count - 1 WHERE number = %s", last.number)
    problems = verify_chain().problems
    assert f"batch {last.number} was altered (its hash or MAC does not verify)" in problems


def test_a_checkpoint_file_deleted_after_checkpoints_were_written_is_reported(db):
    sealing.seal()
    anchor.checkpoint_file().unlink()
    problems = verify_chain().problems
    assert len(problems) == 1
    assert "is missing or empty although checkpoints were written" in problems[0]


def test_the_external_copy_shows_a_local_file_that_was_rewound(db, tmp_path, settings):
    external = tmp_path / "elsewhere" / "anchor.jsonl"
    copy = Anchor(settings.AUDIT_ANCHOR_DIR, service.master(), external=external)
    first = copy.append("audit", {"seq": 1, "head": "x", "count": 1})
    original = anchor.checkpoint_file().read_text()
    copy.append("audit", {"seq": 2, "head": "y", "count": 2})
    anchor.checkpoint_file().write_text(original)  # the attacker rewinds the local file
    state = copy.read()
    assert state.problems == [
        "the local checkpoint file lacks 1 checkpoint(s) that the external anchor holds "
        "(truncated or replaced)"
    ]
    assert state.latest("audit")["seq"] == 2
    assert len(external.read_text().splitlines()) == 2
    assert first in state.records


def test_more_than_n_unsealed_entries_are_sealed_once_committed(
    users, settings, django_capture_on_commit_callbacks
):
    settings.AUDIT_SEAL_CHECK_SECONDS = -1  # this process looks after every commit
    settings.AUDIT_SEAL_EVERY = 5
    settings.AUDIT_SEAL_AFTER_SECONDS = 3600
    sealing.seal()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            record("test.event", actor=users["doctor1"])
    assert AuditEntry.objects.filter(batch__isnull=True).count() == 5  # not more than N yet
    with django_capture_on_commit_callbacks(execute=True):
        record("test.event", actor=users["doctor1"])
    assert not AuditEntry.objects.filter(batch__isnull=True).exists()
    latest = anchor.latest_checkpoint()
    assert latest is not None
    assert latest["batch"] == _last_batch().number
    assert verify_chain().ok


def test_an_old_unsealed_entry_is_sealed_once_committed(
    users, settings, django_capture_on_commit_callbacks
):
    settings.AUDIT_SEAL_CHECK_SECONDS = -1
    settings.AUDIT_SEAL_EVERY = 1000
    settings.AUDIT_SEAL_AFTER_SECONDS = 0  # every entry is "old"
    with django_capture_on_commit_callbacks(execute=True):
        record("test.event", actor=users["doctor1"])
    assert not AuditEntry.objects.filter(batch__isnull=True).exists()


def test_a_process_looks_at_the_backlog_at_most_once_per_interval(
    users, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.AUDIT_SEAL_CHECK_SECONDS = 3600
    settings.AUDIT_SEAL_AFTER_SECONDS = 0
    monkeypatch.setattr(sealing, "_last_look", float("-inf"))  # this process never looked
    with django_capture_on_commit_callbacks(execute=True):
        record("test.event", actor=users["doctor1"])  # looks, and seals
    with django_capture_on_commit_callbacks(execute=True):
        record("test.event", actor=users["doctor1"])  # within the interval: does not look
    assert AuditEntry.objects.filter(batch__isnull=True).count() == 1


def test_the_demo_anchors_its_seeded_chain_so_a_wipe_right_after_is_reported(tmp_path):
    exe = Path(sys.executable).parent / "carevault"
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, *argv], capture_output=True, text=True, env=env, timeout=300, check=False
        )

    assert run("demo", "--seed-only", "--password", "Anchor-Demo-Pass-42").returncode == 0
    assert (tmp_path / CHECKPOINTS).exists()
    with sqlite3.connect(tmp_path / "carevault.sqlite3") as db:
        db.execute("DELETE FROM audit_auditentry")
        db.execute("DELETE FROM audit_auditbatch")
    db.close()
    result = run("audit", "verify")
    assert result.returncode != 0
    assert result.stdout.startswith("audit chain BROKEN:\n  the audit log is empty but a signed")
