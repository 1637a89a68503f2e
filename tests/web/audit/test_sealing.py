"""Sealing: every kind of tampering with a sealed log is reported (an edit of any field, a sealed
entry deleted anywhere, two entries' ids swapped, a batch deleted or edited, an entry unmarked
or marked into a batch), the legacy chain verifies as batch 0, and a sealer that stopped after
its commit is repaired by the next one."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from django.db import connection

from carevault.web.audit import anchor, sealing
from carevault.web.audit.log import _digest, record, verify_chain
from carevault.web.audit.models import AuditBatch, AuditEntry, AuditHead


def _sql(statement: str, *params: object) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, list(params))


def _seqs() -> list[int]:
    return list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True))


@pytest.fixture
def sealed(users):
    """The seeded log and a few more entries, sealed in at least two batches."""
    sealing.seal()
    for n in range(4):
        record("test.event", actor=users["doctor1"], details={"n": n})
    sealing.seal()
    assert AuditBatch.objects.count() >= 3  # batch 0 (no legacy here), the seed, the four
    report = verify_chain()
    assert report.ok, report.problems
    assert report.unsealed == 0


def _root_problem(problems: list[str], number: int) -> bool:
    return any(p.startswith(f"batch {number} sealed ") for p in problems)


# -- an intact log ---------------------------------------------------------------------------------


def test_a_sealed_log_verifies_and_counts_its_batches(sealed):
    report = verify_chain()
    assert report.sealed == report.entries
    assert report.batches == AuditBatch.objects.count()
    assert report.as_dict()["ok"] is True
    assert set(report.as_dict()) >= {
        "ok",
        "entries",
        "problems",
        "unsealed",
    }


def test_unsealed_entries_are_reported_apart_and_do_not_fail_the_log(sealed, users):
    record("test.event", actor=users["doctor1"])
    report = verify_chain()
    assert report.ok
    assert report.unsealed == 1


def test_a_second_seal_with_nothing_new_makes_no_batch(sealed):
    before = AuditBatch.objects.count()
    result = sealing.seal()
    assert (result.batches, result.entries) == ([], 0)
    assert AuditBatch.objects.count() == before


def test_an_entry_committed_after_a_later_one_was_sealed_is_sealed_next(sealed, users):
    # PostgreSQL: ids come from a sequence, so id 7 can commit after id 8 was sealed.
    late = record("test.event", actor=users["doctor1"])
    AuditEntry.objects.filter(pk=late.pk).update(batch=-1)  # not visible to the sealer yet
    record("test.event", actor=users["doctor1"])
    sealing.seal()
    AuditEntry.objects.filter(pk=late.pk).update(batch=None)  # ...now it commits
    result = sealing.seal()
    assert result.entries == 1
    last = AuditBatch.objects.order_by("-number").first()
    assert (last.first_seq, last.last_seq) == (late.seq, late.seq)
    report = verify_chain()
    assert report.ok, report.problems
    assert report.unsealed == 0


def test_a_long_backlog_is_sealed_in_several_batches(users, monkeypatch):
    monkeypatch.setattr(sealing, "MAX_BATCH", 7)
    result = sealing.seal()
    assert len(result.batches) >= 3
    assert AuditBatch.objects.exclude(number=0).filter(count__gt=7).count() == 0
    assert verify_chain().ok


# -- tampering after the seal ----------------------------------------------------------------------

FIELDS = [
    ("at", dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
    ("actor_id", 999),
    ("actor", "someone"),
    ("role", "admin"),
    ("action", "auth.logout"),
    ("outcome", "denied"),
    ("target_type", "x.y"),
    ("target_id", "42"),
    ("patient_id", "7"),
    ("address", "10.0.0.1"),
    ("details", {"via": "nothing to see"}),
    ("prev_digest", "0" * 64),
    ("digest", hashlib.sha256(b"x").hexdigest()),
]


@pytest.mark.parametrize(("field", "value"), FIELDS, ids=[f for f, _ in FIELDS])
def test_an_edit_of_any_field_of_a_sealed_entry_is_reported(sealed, field, value):
    seq = _seqs()[len(_seqs()) // 2]
    AuditEntry.objects.filter(seq=seq).update(**{field: value})
    problems = verify_chain().problems
    assert f"entry {seq} was altered" in problems


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_deleted_sealed_entry_is_reported_by_its_batch(sealed, where):
    seqs = _seqs()
    seq = {"first": seqs[0], "middle": seqs[len(seqs) // 2], "last": seqs[-1]}[where]
    number = AuditEntry.objects.get(seq=seq).batch
    _sql("DELETE FROM audit_auditentry WHERE seq = %s", seq)
    assert _root_problem(verify_chain().problems, number)


def test_two_entries_with_swapped_ids_and_seqs_are_reported(sealed):
    a, b = _seqs()[3:5]
    # Both columns swapped, in three steps each (both are unique).
    for column in ("seq", "id"):
        _sql(f"UPDATE audit_auditentry SET {column} = -1 WHERE {column} = %s", a)
        _sql(f"UPDATE audit_auditentry SET {column} = %s WHERE {column} = %s", a, b)
        _sql(f"UPDATE audit_auditentry SET {column} = %s WHERE {column} = -1", b)
    problems = verify_chain().problems
    assert f"entry {a} was altered" in problems
    assert f"entry {b} was altered" in problems


def test_a_deleted_batch_is_reported(sealed):
    middle = AuditBatch.objects.order_by("number")[1].number
    _sql("DELETE FROM audit_auditentry WHERE batch = %s", middle)
    _sql("DELETE FROM audit_auditbatch WHERE number = %s", middle)
    problems = verify_chain().problems
    assert f"batch {middle} is missing (next is {middle + 1})" in problems
    assert f"batch {middle + 1} does not follow the batch before it" in problems


@pytest.mark.parametrize(
    ("column", "value"),
    [("root", "0" * 64), ("prev_hash", "1" * 64), ("count", 1), ("last_seq", 1), ("mac", "2" * 64)],
)
def test_an_edited_batch_is_reported(sealed, column, value):
    last = AuditBatch.objects.order_by("-number").first().number
    _sql(f"UPDATE audit_auditbatch SET {column} = %s WHERE number = %s", value, last)
    assert f"batch {last} was altered (its hash or MAC does not verify)" in verify_chain().problems


def test_a_batch_recomputed_without_the_key_is_reported(sealed):
    # The attacker drops an entry and recomputes the root and hash (no key needed) but not the MAC.
    last = AuditBatch.objects.order_by("-number").first()
    seq = AuditEntry.objects.filter(batch=last.number).order_by("seq").first().seq
    _sql("DELETE FROM audit_auditentry WHERE seq = %s", seq)
    root = sealing.RootHasher()
    for entry in AuditEntry.objects.filter(batch=last.number).order_by("seq"):
        root.add(entry.seq, entry.digest)
    last.root, last.count, last.first_seq = root.hexdigest(), root.count, root.first
    last.total -= 1
    last.hash = sealing.batch_hash(last)
    AuditBatch.objects.filter(number=last.number).update(
        root=last.root, count=last.count, first_seq=last.first_seq, total=last.total, hash=last.hash
    )
    problems = verify_chain().problems
    assert f"batch {last.number} was altered (its hash or MAC does not verify)" in problems
    assert any(f"batch {last.number} is not the one a signed checkpoint" in p for p in problems)


def test_an_entry_unmarked_from_its_batch_is_reported(sealed):
    seq = _seqs()[-2]
    number = AuditEntry.objects.get(seq=seq).batch
    AuditEntry.objects.filter(seq=seq).update(batch=None)
    assert _root_problem(verify_chain().problems, number)


def test_an_entry_marked_with_a_batch_that_does_not_exist_is_reported(sealed):
    seq = _seqs()[-1]
    AuditEntry.objects.filter(seq=seq).update(batch=9999)
    problems = verify_chain().problems
    assert "entries are marked with batch 9999, which does not exist" in problems


def test_a_wiped_log_is_reported(sealed):
    _sql("DELETE FROM audit_auditentry")
    problems = verify_chain().problems
    assert problems[0].startswith("the audit log is empty but a signed checkpoint")


def test_a_truncated_tail_with_its_batches_is_reported(sealed):
    last = AuditBatch.objects.order_by("-number").first().number
    _sql("DELETE FROM audit_auditentry WHERE batch = %s", last)
    _sql("DELETE FROM audit_auditbatch WHERE number = %s", last)
    problems = verify_chain().problems
    assert any(f"recorded batch {last}" in p for p in problems)


def test_an_unsealed_entry_deleted_shows_as_an_id_gap_on_sqlite(sealed, users):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL ids have gaps of their own (rolled-back appends): see gaps")
    cut = record("test.event", actor=users["doctor1"]).seq
    record("test.event", actor=users["doctor1"])
    _sql("DELETE FROM audit_auditentry WHERE seq = %s", cut)
    assert f"entry {cut} is missing (next is {cut + 1})" in verify_chain().problems


def test_an_unsealed_tail_cut_shows_by_the_id_counter_unless_it_is_rewound_too(sealed, users):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's AUTOINCREMENT counter")
    last = record("test.event", actor=users["doctor1"]).seq
    _sql("DELETE FROM audit_auditentry WHERE seq = %s", last)
    problems = verify_chain().problems
    assert problems == [
        f"entries {last}-{last} are missing at the end (SQLite gave those ids and never gives "
        "one twice: the unsealed tail was cut)"
    ]
    # The documented window: an attacker who also lowers the counter cuts an unsealed tail unseen.
    _sql("UPDATE sqlite_sequence SET seq = %s WHERE name = 'audit_auditentry'", last - 1)
    assert verify_chain().ok


def test_postgresql_reports_id_gaps_apart_without_failing(sealed, users):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    cut = record("test.event", actor=users["doctor1"]).seq
    record("test.event", actor=users["doctor1"])
    _sql("DELETE FROM audit_auditentry WHERE seq = %s", cut)
    report = verify_chain()
    assert report.ok  # a rolled-back append leaves the same gap
    assert cut in report.gaps


# -- a sealer stopped between its commit and the anchor --------------------------------------------


def test_a_batch_committed_but_not_anchored_is_anchored_by_the_next_seal(users, monkeypatch):
    sealing.seal()
    record("test.event", actor=users["doctor1"])

    def killed(body: object) -> None:
        raise KeyboardInterrupt  # the process dies right after the batch committed

    with monkeypatch.context() as patch:
        patch.setattr(anchor, "append_batch", killed)
        with pytest.raises(KeyboardInterrupt):
            sealing.seal()
    last = AuditBatch.objects.order_by("-number").first()
    assert anchor.latest_checkpoint()["batch"] == last.number - 1  # committed, not anchored
    assert verify_chain().ok  # an anchor behind the database is no tampering
    result = sealing.seal()
    assert result.anchored == [last.number]
    assert result.batches == []
    assert anchor.latest_checkpoint()["hash"] == last.hash
    assert verify_chain().ok


def test_a_sealer_that_finds_the_lock_taken_seals_nothing(users, monkeypatch):
    monkeypatch.setattr(sealing, "_lock", lambda: False)
    record("test.event", actor=users["doctor1"])
    result = sealing.seal()
    assert result.skipped
    assert result.batches == []


# -- the legacy chain (entries written before batches) ---------------------------------------------


def _legacy_log(n: int) -> list[int]:
    """Replace the log with ``n`` entries chained the old way, head included (a database from
    before the migration)."""
    _sql("DELETE FROM audit_auditentry")
    _sql("DELETE FROM audit_auditbatch")
    prev = sealing.GENESIS
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for seq in range(1, n + 1):
        entry = AuditEntry(seq=seq, pk=seq, at=at, action="legacy.event", outcome="ok")
        entry.prev_digest = prev
        entry.digest = prev = _digest(prev, entry)
        entry.save(force_insert=True)
    AuditHead.objects.update_or_create(id=1, defaults={"seq": n, "digest": prev})
    return list(range(1, n + 1))


@pytest.fixture
def migrated(users):
    _legacy_log(6)
    assert verify_chain().ok  # before any seal: the legacy chain, verified the old way
    record("test.event", actor=users["doctor1"])
    sealing.seal()
    report = verify_chain()
    assert report.ok, report.problems
    zero = AuditBatch.objects.get(number=0)
    assert (zero.last_seq, zero.count, zero.root) == (6, 6, AuditHead.objects.get(id=1).digest)
    assert AuditEntry.objects.filter(batch=0).count() == 6
    assert AuditEntry.objects.get(action="test.event").seq > 6


def test_a_legacy_entry_edited_after_the_migration_is_reported(migrated):
    AuditEntry.objects.filter(seq=3).update(outcome="denied")
    assert verify_chain().problems == ["entry 3 was altered"]


def test_a_legacy_entry_deleted_after_the_migration_is_reported(migrated):
    _sql("DELETE FROM audit_auditentry WHERE seq = 3")
    problems = verify_chain().problems
    assert "entry 3 is missing (next is 4)" in problems
    assert "entry 4 does not follow the entry before it" in problems


def test_a_cut_legacy_tail_with_a_rewound_head_is_reported_by_batch_zero(migrated):
    _sql("DELETE FROM audit_auditentry WHERE seq = 6")
    digest = AuditEntry.objects.get(seq=5).digest
    AuditHead.objects.filter(id=1).update(seq=5, digest=digest)
    problems = verify_chain().problems
    assert "the chain ends at 5 but its head says 6" in problems
    assert "the legacy head says 5 but batch 0 sealed 6" in problems


def test_a_legacy_cut_before_the_first_seal_is_reported_by_the_head(users):
    _legacy_log(5)
    _sql("DELETE FROM audit_auditentry WHERE seq = 5")
    assert verify_chain().problems == ["the chain ends at 4 but its head says 5"]


def test_the_sealer_refuses_to_seal_over_a_deleted_checkpoint_file(sealed, users):
    # A fresh checkpoint file would launder the deletion (and a wipe with it).
    anchor.checkpoint_file().unlink()
    record("test.event", actor=users["doctor1"])
    result = sealing.seal()
    assert "is missing or empty although checkpoints were written" in result.refused
    assert not anchor.checkpoint_file().exists()
    assert not verify_chain().ok


def test_the_sealer_refuses_to_seal_a_wiped_or_restored_log(sealed, users):
    last = AuditBatch.objects.order_by("-number").first().number
    _sql("DELETE FROM audit_auditentry")
    _sql("DELETE FROM audit_auditbatch")
    record("test.event", actor=users["doctor1"])
    result = sealing.seal()
    assert result.refused == f"the checkpoint file records batch {last}, which the database lacks"
    assert not AuditBatch.objects.exists()
