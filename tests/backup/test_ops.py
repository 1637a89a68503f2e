"""Work directories of backups: a killed process's staged (not yet encrypted) snapshot is swept
by the next backup; a live one is left alone. Destinations never overwrite a backup."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from carevault.backup import ops
from carevault.backup.archive import BackupError


def aged(path: Path) -> Path:
    os.utime(path, (1_000_000, 1_000_000))
    return path


def test_a_dead_processs_staging_directory_is_swept(tmp_path):
    dead = tmp_path / ".cvbackup-staging-abc"
    dead.mkdir()
    (dead / ".held").write_bytes(b"")
    (dead / "database.sqlite3").write_bytes(b"plain")
    aged(dead)
    assert ops.sweep(tmp_path) == [dead]
    assert not dead.exists()


def test_a_live_staging_directory_and_other_files_are_left_alone(tmp_path):
    live = tmp_path / ".cvbackup-staging-live"
    live.mkdir()
    with open(live / ".held", "wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        aged(live)
        other = tmp_path / "mine"
        other.mkdir()
        assert ops.sweep(tmp_path) == []
    assert live.exists()
    assert other.exists()


def test_a_directory_gets_a_timestamped_name_and_a_file_must_say_what_it_is(tmp_path):
    assert ops.destination(tmp_path).name.startswith("carevault-")
    assert ops.destination(tmp_path).suffix == ".cvbackup"
    with pytest.raises(BackupError, match=r"must end in \.cvbackup"):
        ops.destination(tmp_path / "nightly.tar")
