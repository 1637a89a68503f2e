"""`carevault security status | incidents | unblock | lift | lift-floor`, run as the officer
would: in a subprocess against a data directory of its own. Each prints what it did and exits
non-zero, with one clear line, on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "carevault"
PASSWORD = "Subprocess-Demo-Pass-7"


def run(data_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [EXE, *argv], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("operator")
    result = run(data_dir, "demo", "--seed-only", "--password", PASSWORD)
    assert result.returncode == 0, result.stderr
    return data_dir


def test_status_prints_what_is_in_force_and_the_limits(seeded):
    result = run(seeded, "security", "status")
    assert result.returncode == 0, result.stderr
    assert "blocked addresses: 0" in result.stdout
    assert "encryption floor: not raised" in result.stdout
    facts = json.loads(run(seeded, "security", "status", "--json").stdout)
    assert facts["thresholds"]["address_max_usernames"] == 100
    assert facts["suspended_accounts"] == []


def test_incidents_says_when_there_are_none(seeded):
    result = run(seeded, "security", "incidents")
    assert (result.returncode, result.stdout.strip()) == (0, "no active incidents")


def test_unblock_refuses_what_is_not_an_address_in_one_line(seeded):
    result = run(seeded, "security", "unblock", "ten.0.0.1")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "carevault: error: 'ten.0.0.1' is not an IP address (e.g. 192.0.2.10)"
    )
    ok = run(seeded, "security", "unblock", "192.0.2.10")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("192.0.2.10 was not blocked")


def test_lift_names_the_account_or_says_there_is_none(seeded):
    missing = run(seeded, "security", "lift", "nobody")
    assert missing.returncode == 1
    assert "no account is named 'nobody'" in missing.stderr
    lifted = run(seeded, "security", "lift", "doctor1", "--json")
    assert lifted.returncode == 0, lifted.stderr
    assert json.loads(lifted.stdout)["username"] == "doctor1"


def test_lift_floor_says_when_there_is_nothing_to_lower(seeded):
    result = run(seeded, "security", "lift-floor")
    assert (result.returncode, result.stdout.strip()) == (
        0,
        "no floor was raised; nothing to lower",
    )
