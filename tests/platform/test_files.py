import os
import stat

import pytest

from carevault.platform.files import atomic_write_bytes, atomic_writer


def test_it_writes_the_bytes_owner_only_creating_the_parent(tmp_path):
    target = tmp_path / "deep" / "file.bin"
    atomic_write_bytes(target, b"payload")
    assert target.read_bytes() == b"payload"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


def _interrupted_write(target):
    with atomic_writer(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("interrupted")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        _interrupted_write(target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]
