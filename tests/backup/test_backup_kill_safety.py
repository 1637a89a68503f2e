"""`carevault backup create` killed with SIGKILL at many points: no half-written file ever looks
like a backup, and the next backup sweeps what the killed one staged.

The kill points are deterministic, not timed: the child process counts the calls it makes into
the backup and crypto code (a profile hook) and kills itself at the N-th one, for N spread over
the whole run, from the first snapshot copy to the final rename."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "carevault"
PASSWORD = "Kill-Demo-Pass-7"
KILL_POINTS = 16

CHILD = """
import os, signal, sys
from carevault.cli import main
limit = int(sys.argv[1])
calls = 0
def count(frame, event, arg):
    global calls
    if event == "call" and ("/carevault/backup/" in frame.f_code.co_filename
                            or "/carevault/crypto/" in frame.f_code.co_filename):
        calls += 1
        if calls == limit:
            os.kill(os.getpid(), signal.SIGKILL)
sys.setprofile(count)
code = main(["backup", "create", sys.argv[2]])
sys.setprofile(None)
print("calls", calls)
sys.exit(code)
"""


def env_for(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir)}
    for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CAREVAULT_MASTER_KEY"):
        env.pop(name, None)
    env.pop("CAREVAULT_MASTER_KEY_FILE", None)
    return env


def child(data_dir: Path, limit: int, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(limit), str(dest)],
        capture_output=True,
        text=True,
        env=env_for(data_dir),
        timeout=120,
        check=False,
    )


def carevault(data_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *argv], capture_output=True, text=True, env=env_for(data_dir), timeout=120
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("killed")
    assert carevault(data_dir, "demo", "--seed-only", "--password", PASSWORD).returncode == 0
    # The signing key exists before the runs, as on any server that has made one backup.
    first = tmp_path_factory.mktemp("first") / "first.cvbackup"
    assert carevault(data_dir, "backup", "create", str(first)).returncode == 0
    return data_dir


def test_a_backup_killed_at_any_point_leaves_nothing_that_looks_valid(seeded, tmp_path):
    whole = child(seeded, 0, tmp_path / "measure" / "whole.cvbackup")
    assert whole.returncode == 0, whole.stderr
    total = int(whole.stdout.split()[-1])
    assert total > 100
    folder = tmp_path / "nightly"
    folder.mkdir()
    points = sorted({1 + (total - 1) * i // (KILL_POINTS - 1) for i in range(KILL_POINTS)})
    finished = 0
    for n, limit in enumerate(points):
        result = child(seeded, limit, folder / f"run-{n}.cvbackup")
        if result.returncode == 0:
            finished += 1  # the last point may fall after the rename: then it must be whole
        else:
            assert result.returncode == -signal.SIGKILL, result.stderr
        for path in folder.glob("*.cvbackup"):
            verified = carevault(seeded, "backup", "verify", str(path))
            assert verified.returncode == 0, (limit, verified.stderr)
    assert finished <= 2
    # What the killed runs staged (unencrypted) is swept by the next backup once it is stale.
    leftovers = list(folder.glob(".*"))
    assert any(p.name.endswith(".part") for p in leftovers)  # killed while writing the file
    assert any(p.name.startswith(".cvbackup-staging-") for p in leftovers)  # while staging
    for leftover in leftovers:
        os.utime(leftover, (1_000_000, 1_000_000))
    assert carevault(seeded, "backup", "create", str(folder)).returncode == 0
    assert not list(folder.glob(".*"))
    listed = carevault(seeded, "backup", "list", str(folder))
    assert "NOT A WHOLE BACKUP" not in listed.stdout
