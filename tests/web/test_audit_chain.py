"""The audit log is append-only, every entry under its own MAC and, once sealed, in a batch: every
edit, re-ordering, deletion of a sealed entry or cut of the sealed tail made behind the
application's back is reported, naming the entry or its batch. (Batches, the anchor and the
legacy chain in depth: tests/web/audit/.)"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.http import Http404
from django.test import RequestFactory

from carevault.crypto import DecryptionError, canonical_bytes
from carevault.web.access import deny
from carevault.web.audit import sealing
from carevault.web.audit.log import _entry_fields, record, verify_chain
from carevault.web.audit.models import AuditBatch, AuditEntry
from carevault.web.vault import service
from carevault.web.vault.models import ServiceSecret

EXE = Path(sys.executable).parent / "carevault"
PASSWORD = "Audit-Chain-Demo-Pass-3"


def _seqs() -> list[int]:
    return list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True))


def _middle() -> int:
    seqs = _seqs()
    return seqs[len(seqs) // 2]


def _raw_delete(seq: int) -> None:
    # The model refuses deletion; an insider with SQL access does not ask it.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditentry WHERE seq = %s", [seq])


def _problems() -> list[str]:
    return verify_chain().problems


def _batch_of(seq: int) -> int:
    return int(AuditEntry.objects.get(seq=seq).batch)


def _root_mismatch(number: int) -> str:
    return f"batch {number} sealed "


def _has(problems: list[str], start: str, end: str = "") -> bool:
    return any(p.startswith(start) and p.endswith(end) for p in problems)


@pytest.fixture
def sealed(db):
    """The seeded log, sealed (and its batches anchored in the test's own directory)."""
    sealing.seal()
    assert not AuditEntry.objects.filter(batch__isnull=True).exists()


# -- intact ----------------------------------------------------------------------------------------


def test_the_chain_verifies_after_the_seed(db):
    report = verify_chain()
    assert report.ok, report.problems
    assert report.entries == len(_seqs()) > 20
    assert _seqs() == list(range(1, report.entries + 1))


def test_new_entries_extend_the_chain(users):
    before = verify_chain().entries
    record("test.event", actor=users["doctor1"], details={"n": 1, "list": ["a", None, True]})
    report = verify_chain()
    assert report.ok, report.problems
    assert report.entries == before + 1


def test_an_entry_carries_its_own_mac_over_its_seq_which_is_its_id(db):
    entry = AuditEntry.objects.get(seq=1)
    assert entry.pk == entry.seq
    assert entry.prev_digest == ""  # no link to the entry before: appending locks nothing
    assert entry.digest == sealing.entry_mac(entry)


def test_the_chain_key_is_a_service_secret_wrapped_by_the_master_key(db):
    key = service.service_secret("audit-chain").expose()
    assert key not in bytes(ServiceSecret.objects.get(name="audit-chain").wrapped)


# -- the model refuses -----------------------------------------------------------------------------


def test_the_model_refuses_to_save_an_existing_entry(db):
    entry = AuditEntry.objects.get(seq=1)
    entry.outcome = "denied"
    with pytest.raises(ValueError, match="append-only"):
        entry.save()
    assert AuditEntry.objects.get(seq=1).outcome == "ok"


def test_the_model_refuses_to_delete_an_entry(db):
    with pytest.raises(ValueError, match="append-only"):
        AuditEntry.objects.get(seq=1).delete()
    assert AuditEntry.objects.filter(seq=1).exists()


# -- tampering behind the application's back -------------------------------------------------------


def test_an_edited_outcome_is_reported_naming_the_entry(db):
    seq = _middle()
    AuditEntry.objects.filter(seq=seq).update(outcome="denied")
    assert _problems() == [f"entry {seq} was altered"]


def test_edited_details_are_reported_naming_the_entry(db):
    seq = _middle()
    AuditEntry.objects.filter(seq=seq).update(details={"via": "nothing to see"})
    assert _problems() == [f"entry {seq} was altered"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("actor", "doctor2"), ("action", "auth.logout"), ("patient_id", ""), ("address", "10.0.0.1")],
)
def test_any_edited_field_is_reported(db, field, value):
    seq = _middle()
    AuditEntry.objects.filter(seq=seq).update(**{field: value})
    assert _problems() == [f"entry {seq} was altered"]


def test_a_deleted_sealed_entry_is_reported_by_its_batch_and_its_id_gap(sealed):
    seq = _middle()
    number = _batch_of(seq)
    _raw_delete(seq)
    problems = _problems()
    assert _has(problems, _root_mismatch(number), "(entries deleted, added or edited)")
    if connection.vendor == "sqlite":  # ids are contiguous there: the gap names the entry
        assert f"entry {seq} is missing (next is {seq + 1})" in problems


def test_a_deleted_first_entry_is_reported(sealed):
    first = _seqs()[0]
    number = _batch_of(first)
    _raw_delete(first)
    assert _has(_problems(), _root_mismatch(number))


def test_two_entries_with_swapped_places_are_reported(sealed):
    seq = _middle()
    first = AuditEntry.objects.get(seq=seq).pk
    second = AuditEntry.objects.get(seq=seq + 1).pk
    # Three steps: seq is unique.
    AuditEntry.objects.filter(pk=first).update(seq=-1)
    AuditEntry.objects.filter(pk=second).update(seq=seq)
    AuditEntry.objects.filter(pk=first).update(seq=seq + 1)
    problems = _problems()
    assert f"entry {seq} was altered" in problems
    assert f"entry {seq + 1} was altered" in problems


def test_a_cut_sealed_tail_is_reported_by_its_batch(sealed):
    last = _seqs()[-1]
    number = _batch_of(last)
    _raw_delete(last)
    assert _has(_problems(), _root_mismatch(number))


def test_a_cut_tail_with_its_batch_deleted_is_reported_against_the_signed_checkpoint(sealed):
    last = AuditBatch.objects.order_by("-number").first()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditentry WHERE batch = %s", [last.number])
        cursor.execute("DELETE FROM audit_auditbatch WHERE number = %s", [last.number])
    problems = _problems()
    assert _has(problems, f"the log's last batch is {last.number - 1} but a signed checkpoint")


def test_an_appended_forgery_is_reported(sealed):
    seq = _seqs()[-1] + 1
    forged = AuditEntry(
        pk=seq,
        seq=seq,
        at=AuditEntry.objects.get(seq=seq - 1).at,
        action="auth.login",
        outcome="ok",
    )
    forged.digest = hashlib.sha256(b"forged").hexdigest()
    forged.save()
    report = verify_chain()
    assert report.problems == [f"entry {forged.seq} was altered"]
    assert report.unsealed == 1


def test_macs_recomputed_with_plain_sha256_do_not_verify(db):
    # The attacker edits an entry and recomputes every MAC, the way a hash without a key would
    # allow. The MAC is an HMAC under a key only the master key opens.
    seq = _middle()
    AuditEntry.objects.filter(seq=seq).update(outcome="denied")
    for entry in AuditEntry.objects.order_by("seq"):
        digest = hashlib.sha256(canonical_bytes(_entry_fields(entry))).hexdigest()
        AuditEntry.objects.filter(pk=entry.pk).update(digest=digest)
    problems = _problems()
    assert f"entry {seq} was altered" in problems
    assert len(problems) == len(_seqs())  # every entry: none of them carries a valid HMAC


def test_a_chain_recomputed_under_a_replaced_key_does_not_verify(db):
    # Replacing the wrapped chain key with one the attacker wrapped needs the master key too.
    ServiceSecret.objects.filter(name="audit-chain").update(wrapped=b"attacker's own key")
    service.reset_caches()
    try:
        with pytest.raises(DecryptionError):
            verify_chain()
    finally:
        service.reset_caches()


# -- values every database can store ---------------------------------------------------------------


def test_an_entry_with_nul_characters_and_long_values_is_written_and_verifies(db):
    # PostgreSQL refuses NUL in text and JSON and enforces column lengths; SQLite does neither.
    entry = record(
        "test.hostile",
        target_type="x" * 100,
        target_id="id\x00" + "9" * 100,
        details={"path": "/a\x00b", "nested": ["\x00"], "key\x00": "v"},
    )
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert stored.details == {"path": "/a\ufffdb", "nested": ["\ufffd"], "key\ufffd": "v"}
    assert stored.target_id.startswith("id\ufffd")
    assert len(stored.target_id) == 64
    assert len(stored.target_type) == 64
    report = verify_chain()
    assert report.ok, report.problems


def test_a_denied_request_for_a_path_with_a_nul_is_still_audited(users):
    request = RequestFactory().get("/labs/sample/S-%00%00/")
    request.user = users["patient1"]
    assert "\x00" in request.path
    with pytest.raises(Http404):
        deny(request, reason="no such sample", target_type="labs.labrequest", target_id="S-\x00")
    entry = AuditEntry.objects.order_by("-seq").first()
    assert entry.action == "access.denied"
    assert entry.details["path"] == "/labs/sample/S-\ufffd\ufffd/"
    assert verify_chain().ok


# -- the command -----------------------------------------------------------------------------------


def _run(data_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)  # SQLite: the file the attacker edits below
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([EXE, *argv], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def seeded_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("audit-seeded")
    result = _run(data_dir, "demo", "--seed-only", "--password", PASSWORD)
    assert result.returncode == 0, result.stderr
    result = _run(data_dir, "audit", "seal")
    assert result.returncode == 0, result.stderr
    return data_dir


@pytest.fixture
def data_dir(seeded_dir: Path, tmp_path: Path) -> Path:
    """A copy of the seeded data directory, to tamper with."""
    return Path(shutil.copytree(seeded_dir, tmp_path / "data"))


def _sql(data_dir: Path, statement: str, *params: object) -> None:
    with sqlite3.connect(data_dir / "carevault.sqlite3") as db:
        db.execute(statement, params)
    db.close()


def test_the_command_passes_an_intact_chain(seeded_dir):
    result = _run(seeded_dir, "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("audit chain intact: ")
    report = json.loads(_run(seeded_dir, "audit", "verify", "--json").stdout)
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["entries"] > 20


def test_the_command_fails_on_an_entry_edited_in_the_database_file(data_dir):
    _sql(data_dir, "UPDATE audit_auditentry SET outcome = 'denied' WHERE seq = 5")
    result = _run(data_dir, "audit", "verify")
    assert result.returncode != 0
    assert result.stdout.splitlines() == ["audit chain BROKEN:", "  entry 5 was altered"]


def test_the_command_reports_one_line_per_problem(data_dir):
    _sql(data_dir, "DELETE FROM audit_auditentry WHERE seq = 7")
    _sql(data_dir, "UPDATE audit_auditentry SET details = ? WHERE seq = 3", '{"via": "x"}')
    result = _run(data_dir, "audit", "verify")
    assert result.returncode != 0
    report = json.loads(_run(data_dir, "audit", "verify", "--json").stdout)
    assert report["ok"] is False
    assert result.stdout.splitlines() == ["audit chain BROKEN:"] + [
        f"  {p}" for p in report["problems"]
    ]
    assert report["problems"][:2] == ["entry 3 was altered", "entry 7 is missing (next is 8)"]
    # The deletion also contradicts the batch that sealed entry 7 after the seed.
    assert report["problems"][2].startswith("batch 1 sealed ")
    assert report["problems"][2].endswith("(entries deleted, added or edited)")
    assert len(report["problems"]) == 3
    assert report["unsealed"] == 0
    assert report["batches"] == 2


def _django(data_dir: Path, code: str) -> None:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    env["DJANGO_SETTINGS_MODULE"] = "carevault.web.settings"
    program = (
        "import django\ndjango.setup()\n"
        "from carevault.web.audit import sealing\n"
        "from carevault.web.audit.log import record\n" + code
    )
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_command_fails_on_an_older_copy_of_the_database_put_back(data_dir):
    database = data_dir / "carevault.sqlite3"
    shutil.copy(database, data_dir / "older.sqlite3")  # a backup of the database alone
    _django(data_dir, "record('test.after-the-backup')\nsealing.seal()")
    shutil.copy(data_dir / "older.sqlite3", database)  # put back: the last batch is gone
    result = _run(data_dir, "audit", "verify")
    assert result.returncode != 0
    assert "(truncated, wiped, or an older database restored)" in result.stdout
    sealed = _run(data_dir, "audit", "seal")  # and nothing is sealed over it
    assert sealed.returncode != 0
    assert "REFUSED" in sealed.stdout
