"""`carevault backup create | verify | restore | list | check`, run as the operator would: in
subprocesses against a seeded data directory (SQLite, and PostgreSQL through DATABASE_URL).

A backup round-trips into a new, empty data directory (and database) where every record
decrypts, every signature holds and the audit chain verifies; a tampered, truncated or foreign
backup is refused in one line and the target stays untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "carevault"
PASSWORD = "Backup-Demo-Pass-7"
PG_SERVER = "postgres://postgres@127.0.0.1:5432"


def run(
    data_dir: Path,
    *argv: str,
    database_url: str = "",
    master_key_file: Path | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("CAREVAULT_MASTER_KEY", None)
    env.pop("CAREVAULT_MASTER_KEY_FILE", None)
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    if master_key_file is not None:
        env["CAREVAULT_MASTER_KEY_FILE"] = str(master_key_file)
    return subprocess.run(
        [EXE, *argv], capture_output=True, text=True, env=env, timeout=120, check=False, input=stdin
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", "--no-psqlrc", "-q", "-c", sql, f"{PG_SERVER}/postgres"],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("source")
    ok(run(data_dir, "demo", "--seed-only", "--password", PASSWORD))
    return data_dir


@pytest.fixture(scope="module")
def backup(seeded: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("backups") / "demo.cvbackup"
    ok(run(seeded, "backup", "create", str(out)))
    return out


def restored_dir_works(source: Path, target: Path, database_url: str = "") -> None:
    """The master key comes back by hand (never from a backup); then everything checks out."""
    (target / "keys").mkdir(exist_ok=True)
    shutil.copy(source / "keys" / "master.json", target / "keys" / "master.json")
    report = json.loads(ok(run(target, "backup", "check", "--json", database_url=database_url)))
    assert report["ok"], report
    assert (report["failed_values"], report["failed_signatures"]) == (0, 0)
    assert report["values"] > 40
    assert report["signed"] >= 2
    assert report["files"] >= 1
    assert "audit chain intact" in ok(run(target, "audit", "verify", database_url=database_url))


def test_a_sqlite_backup_restores_into_a_new_data_directory_where_every_record_decrypts(
    seeded, backup, tmp_path
):
    target = tmp_path / "restored"
    out = ok(run(seeded, "backup", "restore", str(backup), "--data-dir", str(target)))
    assert out.startswith(f"restored into {target}")
    assert not (target / "keys" / "master.json").exists()
    assert (target / "carevault.sqlite3").stat().st_mode & 0o077 == 0
    assert list((target / "uploads").iterdir())
    restored_dir_works(seeded, target)


def test_the_restore_drill_on_a_new_machine_recovers_the_master_key_from_shares(
    seeded, backup, tmp_path
):
    # Before the disaster: the officer split the master key among custodians.
    shares = json.loads(ok(run(seeded, "keys", "split", "-k", "2", "-n", "3", "--json")))["shares"]
    # The new machine has nothing but the backup file and two custodians' shares.
    new_dir, key_file = tmp_path / "var", tmp_path / "secrets" / "master.json"
    ok(run(new_dir, "keys", "recover", master_key_file=key_file, stdin="\n".join(shares[1:])))
    restore = ["backup", "restore", str(backup), "--data-dir", str(new_dir)]
    ok(run(new_dir, *restore, master_key_file=key_file))
    check = json.loads(ok(run(new_dir, "backup", "check", "--json", master_key_file=key_file)))
    assert check["ok"], check
    assert "audit chain intact" in ok(run(new_dir, "audit", "verify", master_key_file=key_file))


def test_the_audit_checkpoints_travel_with_the_backup(seeded, tmp_path):
    checkpoints = seeded / "audit" / "checkpoints.jsonl"
    checkpoints.parent.mkdir(exist_ok=True)
    checkpoints.write_text('{"seq": 25}\n')
    try:
        archive = tmp_path / "with-audit.cvbackup"
        ok(run(seeded, "backup", "create", str(archive)))
    finally:
        checkpoints.unlink()
    target = tmp_path / "restored"
    ok(run(seeded, "backup", "restore", str(archive), "--data-dir", str(target)))
    assert (target / "audit" / "checkpoints.jsonl").read_text() == '{"seq": 25}\n'


def test_verify_checks_signature_decryption_and_every_digest(seeded, backup):
    facts = json.loads(ok(run(seeded, "backup", "verify", str(backup), "--json")))
    assert facts["ok"]
    assert facts["header"]["database"] == "sqlite"
    assert facts["header"]["master_versions"] == [1]
    assert facts["files"] >= 3


def test_the_master_key_is_never_in_a_backup(seeded, backup, tmp_path):
    target = tmp_path / "restored"
    ok(run(seeded, "backup", "restore", str(backup), "--data-dir", str(target)))
    master = (seeded / "keys" / "master.json").read_bytes()
    assert master not in backup.read_bytes()
    assert sorted(p.name for p in (target / "keys").iterdir()) == ["wrapped"]


def refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("carevault: error: backup refused:")
    return lines[0]


def test_a_tampered_backup_is_refused_and_the_target_left_untouched(seeded, backup, tmp_path):
    bad = tmp_path / "tampered.cvbackup"
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(data)
    target = tmp_path / "target"
    target.mkdir()
    line = refused(run(seeded, "backup", "restore", str(bad), "--data-dir", str(target)))
    assert "tampered" in line
    assert list(target.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tampered.cvbackup", "target"]
    refused(run(seeded, "backup", "verify", str(bad)))


def test_a_truncated_backup_is_refused(seeded, backup, tmp_path):
    for cut in (10, 1000, len(backup.read_bytes()) // 2, len(backup.read_bytes()) - 1):
        short = tmp_path / f"short-{cut}.cvbackup"
        short.write_bytes(backup.read_bytes()[:cut])
        target = tmp_path / f"target-{cut}"
        refused(run(seeded, "backup", "restore", str(short), "--data-dir", str(target)))
        assert not target.exists()


def test_a_backup_under_another_master_key_is_refused(backup, tmp_path):
    stranger = tmp_path / "stranger"
    ok(run(stranger, "keys", "init"))
    line = refused(run(stranger, "backup", "verify", str(backup)))
    assert "another master key" in line


def test_a_backup_signed_by_another_server_is_refused(seeded, tmp_path):
    # Same master key, but the other server made its own signing key: its backups are foreign.
    other = tmp_path / "other"
    (other / "keys").mkdir(parents=True)
    shutil.copy(seeded / "keys" / "master.json", other / "keys" / "master.json")
    ok(run(other, "demo", "--seed-only", "--password", PASSWORD))
    theirs = tmp_path / "theirs.cvbackup"
    ok(run(other, "backup", "create", str(theirs)))
    line = refused(run(seeded, "backup", "restore", str(theirs), "--data-dir", str(tmp_path / "t")))
    assert "another server's key" in line
    assert not (tmp_path / "t").exists()


def test_restore_refuses_a_directory_that_is_not_empty(seeded, backup, tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep-me").write_text("x")
    line = refused(run(seeded, "backup", "restore", str(backup), "--data-dir", str(target)))
    assert "not empty" in line
    assert [p.name for p in target.iterdir()] == ["keep-me"]


def test_keep_leaves_the_newest_backups_and_list_shows_them_newest_first(seeded, tmp_path):
    folder = tmp_path / "nightly"
    folder.mkdir()
    (folder / ".carevault-x.cvbackup.abc.part").write_bytes(b"half written")
    (folder / "notes.txt").write_text("not a backup")
    made = []
    for _ in range(4):
        facts = json.loads(
            ok(run(seeded, "backup", "create", str(folder), "--keep", "2", "--json"))
        )
        made.append(Path(facts["path"]))
    listed = json.loads(ok(run(seeded, "backup", "list", str(folder), "--json")))
    assert [Path(b["path"]) for b in listed["backups"]] == [made[3], made[2]]
    assert (folder / "notes.txt").exists()
    assert (folder / ".carevault-x.cvbackup.abc.part").exists()


@pytest.fixture
def postgres_databases() -> Iterator[tuple[str, str]]:
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    names = [f"cv_backup_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        psql(f'create database "{name}"')
    try:
        yield f"{PG_SERVER}/{names[0]}", f"{PG_SERVER}/{names[1]}"
    finally:
        for name in names:
            psql(f'drop database if exists "{name}" with (force)')


def test_a_postgresql_backup_restores_into_an_empty_database(postgres_databases, tmp_path):
    source_url, target_url = postgres_databases
    source = tmp_path / "source"
    ok(run(source, "demo", "--seed-only", "--password", PASSWORD, database_url=source_url))
    archive = tmp_path / "pg.cvbackup"
    ok(run(source, "backup", "create", str(archive), database_url=source_url))
    target = tmp_path / "restored"
    argv = ["backup", "restore", str(archive), "--data-dir", str(target)]
    refused(run(source, *argv, database_url=source_url))  # a PostgreSQL backup needs a URL
    ok(run(source, *argv, "--database-url", target_url, database_url=source_url))
    assert not (target / "carevault.sqlite3").exists()
    restored_dir_works(source, target, target_url)
    again = run(source, *argv[:-1], str(tmp_path / "t2"), "--database-url", target_url)
    assert "not empty" in refused(again)
    assert not (tmp_path / "t2").exists()


def test_backup_check_names_each_record_that_fails(seeded, tmp_path):
    import sqlite3

    target = tmp_path / "tampered"
    shutil.copytree(seeded, target)
    db = sqlite3.connect(target / "carevault.sqlite3")
    note_id, body = db.execute("select id, body_enc from clinic_clinicalnote limit 1").fetchone()
    flipped = bytearray(body)
    flipped[len(flipped) // 2] ^= 0x01
    db.execute(
        "update clinic_clinicalnote set body_enc = ? where id = ?", (bytes(flipped), note_id)
    )
    rx_id, signature = db.execute("select id, signature from clinic_prescription").fetchone()
    forged = signature[:-3] + ("A" if signature[-3] != "A" else "B") + signature[-2:]
    db.execute("update clinic_prescription set signature = ? where id = ?", (forged, rx_id))
    db.commit()
    db.close()
    done = run(target, "backup", "check", "--json")
    report = json.loads(done.stdout)
    assert done.returncode != 0
    assert not report["ok"]
    assert report["failures"] == [
        f"clinic.clinicalnote {uuid.UUID(note_id)} body",
        f"clinic.prescription {uuid.UUID(rx_id)} signature",
    ]


def test_backup_check_names_a_clinician_key_whose_wrapped_half_was_swapped(seeded, tmp_path):
    import sqlite3

    target = tmp_path / "keys-swapped"
    shutil.copytree(seeded, target)
    db = sqlite3.connect(target / "carevault.sqlite3")
    (a, wa), (b, wb) = db.execute(
        "select id, wrapped_private from vault_cliniciankey order by id limit 2"
    ).fetchall()
    db.execute("update vault_cliniciankey set wrapped_private = ? where id = ?", (wb, a))
    db.execute("update vault_cliniciankey set wrapped_private = ? where id = ?", (wa, b))
    db.commit()
    db.close()
    report = json.loads(run(target, "backup", "check", "--json").stdout)
    assert report["failed_signing_keys"] == 2
    assert f"vault.cliniciankey {uuid.UUID(a)} wrapped_private" in report["failures"]
    assert f"vault.cliniciankey {uuid.UUID(b)} wrapped_private" in report["failures"]
