"""The web-facing commands, run as a user would: in a subprocess with its own data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "carevault"
PASSWORD = "Subprocess-Demo-Pass-7"


def run(data_dir: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [EXE, *argv], capture_output=True, text=True, env=env, input=stdin, timeout=120
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("seeded")
    result = run(data_dir, "demo", "--seed-only", "--password", PASSWORD, "--json")
    assert result.returncode == 0, result.stderr
    return data_dir


def test_demo_seed_only_creates_every_demo_login_and_does_not_serve(seeded):
    result = run(seeded, "demo", "--seed-only", "--password", PASSWORD, "--json")
    report = json.loads(result.stdout)
    assert report["seeded"] is False  # the second run leaves the data as it is
    assert set(report["users"]) == {
        "admin",
        "doctor1",
        "doctor2",
        "patient1",
        "patient2",
        "patient3",
        "labtech1",
    }


def test_key_rotation_rewraps_the_database_keys_and_is_audited(seeded):
    before = json.loads(run(seeded, "keys", "status", "--json").stdout)
    assert before["wrapped_keyrings"] >= 3 + 2 + 3  # patients, service secrets, signing keys
    rotated = run(seeded, "keys", "rotate", "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["rewrapped"] == before["wrapped_keyrings"]
    after = json.loads(run(seeded, "keys", "status", "--json").stdout)
    assert after["wrapped_under_old_versions"] == 0
    # The data is still readable with the rotated master, and the rotation is in the chain.
    assert run(seeded, "audit", "verify").returncode == 0
    again = run(seeded, "demo", "--seed-only", "--password", PASSWORD)
    assert again.returncode == 0, again.stderr


def test_audit_verify_without_a_database_says_what_to_do_in_one_line(tmp_path):
    result = run(tmp_path, "audit", "verify")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert "carevault demo --seed-only" in result.stderr


def test_a_weak_demo_password_is_refused(tmp_path):
    result = run(tmp_path, "demo", "--seed-only", "--password", "123")
    assert result.returncode != 0
    assert "too weak" in result.stderr


def test_the_outbox_command_shows_an_empty_outbox_and_refuses_production(seeded):
    result = run(seeded, "outbox")
    assert result.returncode == 0, result.stderr
    assert "the outbox is empty" in result.stdout
    env_production = {"CAREVAULT_ENV": "production"}
    refused = subprocess.run(
        [EXE, "outbox"],
        capture_output=True,
        text=True,
        env={**os.environ, "CAREVAULT_DATA_DIR": str(seeded), **env_production},
        timeout=60,
    )
    assert refused.returncode != 0
    assert "no outbox" in refused.stderr


def test_keys_reencrypt_brings_stored_data_up_to_the_suite_asked_for(tmp_path):
    # Data written under a trained policy (AES-256-GCM for the demo's ordinary records).
    assert run(tmp_path, "security", "train-policy").returncode == 0
    assert run(tmp_path, "demo", "--seed-only", "--password", PASSWORD).returncode == 0
    idle = run(tmp_path, "keys", "reencrypt")
    assert idle.returncode == 0, idle.stderr
    assert "nothing to do" in idle.stdout
    result = run(tmp_path, "keys", "reencrypt", "--to", "HYBRID-X25519-AES-256-GCM", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "done"
    assert report["scanned"] == report["total"] > 0
    assert report["reencrypted"] > 0
    assert report["failures"] == 0
    status = run(tmp_path, "keys", "reencrypt", "--status")
    assert status.stdout.strip() == "no re-encryption job is open"
    # Everything is at the suite now: a second run finds nothing left to move.
    again = json.loads(
        run(tmp_path, "keys", "reencrypt", "--to", "RSA-3072-OAEP-AES-256-GCM", "--json").stdout
    )
    assert (again["reencrypted"], again["failures"]) == (0, 0)
    assert run(tmp_path, "audit", "verify").returncode == 0


def test_keys_reencrypt_refuses_an_unknown_or_weak_suite_in_one_line(seeded):
    for bad in ("DES-CBC", "RSA-1024"):
        result = run(seeded, "keys", "reencrypt", "--to", bad)
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1
