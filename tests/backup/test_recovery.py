"""`carevault backup recover --incident ID --from PATH`: the records an incident's actor changed
since the backup get their backed-up values back, audited; nothing else is rolled back.

Run in subprocesses against a seeded data directory: a doctor's account is taken over and
edits two clinical notes and writes a new one, while another doctor legitimately edits a third
note; the security layer's incident names the taken-over account."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "carevault"
PASSWORD = "Recovery-Demo-Pass-7"

SETUP = """
import json, os
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "carevault.web.settings")
django.setup()
from django.utils import timezone
from carevault.web.accounts.models import User
from carevault.web.audit.log import record
from carevault.web.clinic.models import ClinicalNote
from carevault.web.securitycore.models import Incident, IncidentSubject
from carevault.web.vault.context import SYSTEM_WRITE
"""

ATTACK = """
notes = list(ClinicalNote.objects.order_by("id")[:3])
attacker = User.objects.get(username="doctor2")
colleague = User.objects.get(username="doctor1")
def edit(note, actor, text):
    note.seal(SYSTEM_WRITE, body=text)
    note.save()
    record("clinic.note_edit", actor=actor, target=note, patient_id=note.patient_id)
edit(notes[0], attacker, "attacker was here")
edit(notes[1], attacker, "attacker was here too")
edit(notes[2], colleague, "a legitimate correction")
planted = ClinicalNote(patient_id=notes[0].patient_id, author=attacker)
planted.seal(SYSTEM_WRITE, body="planted note")
planted.save()
record("clinic.note_create", actor=attacker, target=planted, patient_id=planted.patient_id)
now = timezone.now()
incident = Incident.objects.create(opened_at=now, updated_at=now, title="account takeover")
IncidentSubject.objects.create(incident=incident, key="account:doctor2")
print(json.dumps({"incident": incident.pk, "notes": [str(n.pk) for n in notes],
                  "planted": str(planted.pk)}))
"""

READ = """
from carevault.web.audit.models import AuditEntry
bodies = {str(n.pk): n.unseal("body") for n in ClinicalNote.objects.all()}
restored = list(AuditEntry.objects.filter(action="backup.record_restored")
                .values_list("target_id", flat=True))
print(json.dumps({"bodies": bodies, "restored_audit": restored}))
"""


PG_SERVER = "postgres://postgres@127.0.0.1:5432"
# The PostgreSQL database of the data directory in use, when the test runs on PostgreSQL.
_databases: dict[Path, str] = {}


def env_for(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir)}
    for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CAREVAULT_MASTER_KEY"):
        env.pop(name, None)
    env.pop("CAREVAULT_MASTER_KEY_FILE", None)
    if data_dir in _databases:
        env["DATABASE_URL"] = _databases[data_dir]
    return env


def run(data_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *argv], capture_output=True, text=True, env=env_for(data_dir), timeout=120
    )


def script(data_dir: Path, body: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SETUP + body)],
        capture_output=True,
        text=True,
        env=env_for(data_dir),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def attack(data_dir: Path, backup: Path) -> tuple[Path, Path, dict, dict]:
    assert run(data_dir, "demo", "--seed-only", "--password", PASSWORD).returncode == 0
    before = script(data_dir, READ)["bodies"]
    made = run(data_dir, "backup", "create", str(backup))
    assert made.returncode == 0, made.stderr
    facts = script(data_dir, ATTACK)
    return data_dir, backup, facts, before


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-q", "-c", sql, f"{PG_SERVER}/postgres"], check=True, capture_output=True
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def attacked(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path, dict, dict]]:
    # Each test gets its own clinic: recovery changes it, and tests run in any order.
    data_dir = tmp_path_factory.mktemp("clinic")
    backup = tmp_path_factory.mktemp("backups") / "before.cvbackup"
    if request.param == "sqlite":
        yield attack(data_dir, backup)
        return
    name = f"cv_recover_{uuid.uuid4().hex[:10]}"
    psql(f'create database "{name}"')
    _databases[data_dir] = f"{PG_SERVER}/{name}"
    try:
        yield attack(data_dir, backup)
    finally:
        del _databases[data_dir]
        psql(f'drop database if exists "{name}" with (force)')


@pytest.mark.parametrize("attacked", ["sqlite"], indirect=True)
def test_a_dry_run_lists_what_the_actor_touched_and_changes_nothing(attacked):
    data_dir, backup, facts, _before = attacked
    argv = ["backup", "recover", "--incident", str(facts["incident"]), "--from", str(backup)]
    result = run(data_dir, *argv, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    records = {r["pk"]: r["outcome"] for r in json.loads(result.stdout)["records"]}
    assert records == {
        facts["notes"][0]: "would-restore",
        facts["notes"][1]: "would-restore",
        facts["planted"]: "not-in-backup",
    }
    assert script(data_dir, READ)["bodies"][facts["notes"][0]] == "attacker was here"
    unknown = run(data_dir, "backup", "recover", "--incident", "99999", "--from", str(backup))
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "carevault: error: backup refused: there is no incident 99999"


def test_recovery_restores_only_the_touched_records_and_audits_it(attacked):
    data_dir, backup, facts, before = attacked
    argv = ["backup", "recover", "--incident", str(facts["incident"]), "--from", str(backup)]
    result = run(data_dir, *argv)
    assert result.returncode == 0, result.stderr
    assert "3 records touched" in result.stdout
    after = script(data_dir, READ)
    first, second, third = facts["notes"]
    assert after["bodies"][first] == before[first]
    assert after["bodies"][second] == before[second]
    assert after["bodies"][third] == "a legitimate correction"  # another actor's edit stays
    assert after["bodies"][facts["planted"]] == "planted note"  # listed for the officer
    assert sorted(after["restored_audit"]) == sorted([first, second])
    assert "audit chain intact" in run(data_dir, "audit", "verify").stdout
    assert run(data_dir, "backup", "check").returncode == 0
    # A second run finds nothing left to restore.
    again = json.loads(run(data_dir, *argv, "--json").stdout)
    assert {r["outcome"] for r in again["records"]} == {"unchanged", "not-in-backup"}
