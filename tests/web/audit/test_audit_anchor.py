"""The audit head is anchored outside the database: signed checkpoints show a wiped, truncated,
re-ordered or rewound chain, and a forged checkpoint, although the chain itself is consistent."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from django.db import connection

from carevault.modelstore.anchor import CHECKPOINTS, Anchor
from carevault.web.audit import anchor
from carevault.web.audit.log import GENESIS, record, verify_chain
from carevault.web.audit.models import AuditEntry, AuditHead
from carevault.web.vault import service


def _sql(statement: str, *params: object) -> None:
    # An insider with SQL access does not go through the append-only model.
    with connection.cursor() as cursor:
        cursor.execute(statement, list(params))


def _rewind_to(seq: int) -> None:
    """Delete every entry after ``seq`` and point the head at entry ``seq``: a consistent, shorter
    chain, which the chain walk alone accepts."""
    digest = AuditEntry.objects.get(seq=seq).digest if seq else GENESIS
    _sql("DELETE FROM audit_auditentry WHERE seq > %s", seq)
    _sql("UPDATE audit_audithead SET seq = %s, digest = %s WHERE id = 1", seq, digest)


def test_a_checkpoint_records_the_head_count_and_a_signature(db):
    written = anchor.write_checkpoint()
    head = AuditHead.objects.get(id=1)
    assert (written["seq"], written["head"]) == (head.seq, head.digest)
    assert written["count"] == AuditEntry.objects.count()
    assert written["signature"]
    assert anchor.latest_checkpoint() == written
    assert anchor.checkpoint_file().name == CHECKPOINTS.name


def test_an_intact_chain_agrees_with_its_checkpoints(users):
    anchor.write_checkpoint()
    record("test.event", actor=users["doctor1"])
    report = verify_chain()
    assert report.ok, report.problems


def test_deleting_every_entry_and_resetting_the_head_is_reported_as_a_wipe(db):
    anchor.write_checkpoint()
    _rewind_to(0)
    report = verify_chain()
    assert report.entries == 0
    assert not report.ok
    assert "the audit log is empty but a signed checkpoint" in report.problems[0]


def test_a_truncated_chain_with_a_rewound_head_is_reported(db):
    anchor.write_checkpoint()
    last = AuditHead.objects.get(id=1).seq
    _rewind_to(last - 3)
    problems = verify_chain().problems
    assert any(f"ends at entry {last - 3}" in p and f"entry {last}" in p for p in problems)
    assert any("entries deleted" in p for p in problems)


def test_a_rewound_head_that_grew_again_is_reported_at_the_checkpointed_entry(users):
    anchor.write_checkpoint()
    last = AuditHead.objects.get(id=1).seq
    _rewind_to(last - 2)
    for _ in range(3):  # the chain grows past the checkpoint again, but differently
        record("test.event", actor=users["doctor1"])
    problems = verify_chain().problems
    assert problems == [
        f"entry {last} is not the one a signed checkpoint of "
        f"{anchor.latest_checkpoint()['at']} recorded (the chain was rewritten, or its head reset)"
    ]


def test_reordered_entries_are_reported(db):
    anchor.write_checkpoint()
    _sql("UPDATE audit_auditentry SET seq = -1 WHERE seq = 4")
    _sql("UPDATE audit_auditentry SET seq = 4 WHERE seq = 5")
    _sql("UPDATE audit_auditentry SET seq = 5 WHERE seq = -1")
    assert not verify_chain().ok


def test_a_forged_checkpoint_is_reported_and_ignored(db):
    written = anchor.write_checkpoint()
    forged = {**written, "seq": written["seq"] + 50, "count": written["count"] + 50}
    with anchor.checkpoint_file().open("a") as out:
        out.write(json.dumps(forged) + "\n")
    problems = verify_chain().problems
    assert problems == ["local checkpoint line 2: the signature does not verify (forged)"]


def test_a_checkpoint_file_deleted_after_checkpoints_were_written_is_reported(db):
    anchor.write_checkpoint()
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


def test_every_hundredth_entry_writes_a_checkpoint_once_committed(
    users, django_capture_on_commit_callbacks
):
    head = AuditHead.objects.get(id=1).seq
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(anchor.CHECKPOINT_EVERY - head % anchor.CHECKPOINT_EVERY):
            record("test.event", actor=users["doctor1"])
    latest = anchor.latest_checkpoint()
    assert latest is not None
    assert latest["seq"] % anchor.CHECKPOINT_EVERY == 0
    assert verify_chain().ok


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
        db.execute("UPDATE audit_audithead SET seq = 0, digest = ?", (GENESIS,))
    db.close()
    result = run("audit", "verify")
    assert result.returncode != 0
    assert result.stdout.startswith("audit chain BROKEN:\n  the audit log is empty but a signed")
