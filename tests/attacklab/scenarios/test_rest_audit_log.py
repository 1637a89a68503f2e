import json
import sqlite3
from pathlib import Path

import pytest

from carevault.attacklab.lab import Files
from carevault.attacklab.scenarios import rest_audit_log as a


@pytest.fixture
def files(tmp_path: Path) -> Files:
    c = sqlite3.connect(tmp_path / "carevault.sqlite3")
    c.executescript(
        """
        create table audit_auditentry (id integer primary key, seq int unique, actor text,
            outcome text, prev_digest text, digest text);
        create table audit_audithead (id int primary key, seq int, digest text);
        """
    )
    for seq in range(1, 31):
        c.execute(
            "insert into audit_auditentry (seq, actor, outcome, prev_digest, digest) "
            "values (?, 'doctor1', 'ok', ?, ?)",
            (seq, f"d{seq - 1}", f"d{seq}"),
        )
    c.execute("insert into audit_audithead values (1, 30, 'd30')")
    c.commit()
    c.close()
    (tmp_path / "audit").mkdir()
    lines = [
        {"kind": "model", "seq": 99},
        {"kind": "audit", "seq": 20, "count": 20, "head": "d20"},
        {"kind": "audit", "seq": 25, "count": 25, "head": "d25"},
    ]
    (tmp_path / "audit" / "checkpoints.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines)
    )
    return Files(tmp_path, {})


def _chain(files: Files) -> list[int]:
    c = sqlite3.connect(files.database)
    try:
        return [r[0] for r in c.execute("select seq from audit_auditentry order by seq")]
    finally:
        c.close()


def test_it_finds_the_audit_tables_and_the_newest_audit_checkpoint(files) -> None:
    c = sqlite3.connect(files.database)
    assert a.audit_tables(c) == ("audit_auditentry", "audit_audithead")
    assert a.latest_checkpoint(files) == 25


def test_the_tail_cut_keeps_the_anchored_entries_and_rewinds_the_head(files) -> None:
    c = sqlite3.connect(files.database)
    assert a.tail_cut(c, files, 25).startswith("5 entries")
    c.commit()
    assert _chain(files) == list(range(1, 26))
    assert c.execute("select seq, digest from audit_audithead").fetchone() == (25, "d25")


def test_the_truncation_cuts_below_the_checkpoint_and_the_wipe_empties_it(files) -> None:
    c = sqlite3.connect(files.database)
    a.truncate_past_checkpoint(c, files, 25)
    c.commit()
    assert _chain(files)[-1] == 20
    a.wipe(c, files, 25)
    c.commit()
    assert _chain(files) == []


def test_reorder_swaps_two_neighbours_and_keeps_every_seq(files) -> None:
    c = sqlite3.connect(files.database)
    a.reorder(c, files, 25)
    c.commit()
    assert _chain(files) == list(range(1, 31))
    digests = [r[0] for r in c.execute("select digest from audit_auditentry order by seq")]
    assert digests[9:11] == ["d11", "d10"]


def test_the_forged_checkpoint_line_claims_a_shorter_chain(files) -> None:
    c = sqlite3.connect(files.database)
    a.forge_checkpoint(c, files, 25)
    assert a.latest_checkpoint(files) == 20


def test_it_reads_batch_checkpoints_and_deletes_the_batches_it_cuts(files) -> None:
    c = sqlite3.connect(files.database)
    c.execute(
        "create table audit_auditbatch (number int primary key, last_seq int, root text, "
        "prev_hash text)"
    )
    c.executemany("insert into audit_auditbatch values (?, ?, 'r', 'p')", [(1, 10), (2, 28)])
    c.commit()
    path = files.data_dir / "audit" / "checkpoints.jsonl"
    path.write_text(json.dumps({"kind": "audit-batch", "batch": 2, "seq": 28, "count": 28}) + "\n")
    assert a.latest_checkpoint(files) == 28
    a.truncate_past_checkpoint(c, files, 28)
    c.commit()
    assert [r[0] for r in c.execute("select number from audit_auditbatch")] == [1]
    a.wipe(c, files, 28)
    c.commit()
    assert c.execute("select count(*) from audit_auditbatch").fetchone() == (0,)
