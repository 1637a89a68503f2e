"""The data directory and everything in it are the owner's alone: 0700 directories, 0600 files,
the SQLite database and its -wal/-shm included, however permissive the operator's umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from carevault import config

EXE = Path(sys.executable).parent / "carevault"


@pytest.fixture
def restored_umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_directory_is_created_owner_only(tmp_path, restored_umask):
    os.umask(0o022)
    path = config.secure_data_dir({"CAREVAULT_DATA_DIR": str(tmp_path / "new" / "data")})
    assert _mode(path) == 0o700
    (path / "file").write_text("x")
    assert _mode(path / "file") == 0o600  # the umask is owner-only from then on


def test_what_an_older_install_left_readable_is_tightened(tmp_path, restored_umask):
    data = tmp_path / "data"
    (data / "uploads").mkdir(parents=True)
    (data / "carevault.sqlite3").write_text("")
    (data / "uploads" / "lab.enc").write_text("x")
    for path in (data, data / "uploads"):
        os.chmod(path, 0o755)
    for path in (data / "carevault.sqlite3", data / "uploads" / "lab.enc"):
        os.chmod(path, 0o644)
    config.secure_data_dir({"CAREVAULT_DATA_DIR": str(data)})
    assert _mode(data) == 0o700
    assert _mode(data / "carevault.sqlite3") == 0o600
    assert config.tighten_tree(data) == 1  # the upload (its directory was done above)
    assert _mode(data / "uploads" / "lab.enc") == 0o600
    assert config.tighten_tree(data) == 0


def test_the_demo_under_a_permissive_umask_leaves_nothing_readable_by_others(tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data)}
    env.pop("DATABASE_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [EXE, "demo", "--seed-only", "--password", "Perm-Check-Demo-Pass-7"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        umask=0o022,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _mode(data) == 0o700
    assert _mode(data / "carevault.sqlite3") == 0o600
    for suffix in ("-wal", "-shm"):
        side = data / f"carevault.sqlite3{suffix}"
        if side.exists():
            assert _mode(side) == 0o600
    readable = [
        str(p.relative_to(data))
        for p in data.rglob("*")
        if not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) & 0o077
    ]
    assert readable == []
