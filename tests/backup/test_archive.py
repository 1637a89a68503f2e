"""The backup file format without Django: whatever is cut, appended, flipped or re-signed is
refused before anything is decrypted, and only the master key opens the body."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from carevault.backup import archive
from carevault.backup.archive import BackupError
from carevault.crypto import MasterKey, SigningKey


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, MasterKey, SigningKey]:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 3000)
    body = tmp_path / "body.tar"
    with tarfile.open(body, "w") as tar:
        tar.add(payload, arcname="payload.bin")
    kek, signer = MasterKey.generate(), SigningKey.generate("Ed25519")
    dest = tmp_path / "out" / "one.cvbackup"
    archive.write(dest, body, {"backup_id": "b1", "created_at": "now"}, kek, signer)
    return dest, kek, signer


def test_a_whole_backup_verifies_and_decrypts_to_its_body(made, tmp_path):
    dest, kek, signer = made
    layout = archive.read_layout(dest)
    assert archive.check_signature(dest, layout).key_id == signer.key_id
    archive.decrypt_body(dest, layout, kek, tmp_path / "back.tar")
    with tarfile.open(tmp_path / "back.tar") as tar:
        assert tar.getnames() == ["payload.bin"]
    assert [p.name for p in dest.parent.iterdir()] == ["one.cvbackup"]  # no temporary left


@pytest.mark.parametrize("where", [0, 20, 200, 5000, -40, -3])
def test_a_flipped_byte_anywhere_is_refused(made, tmp_path, where):
    dest, _kek, _signer = made
    data = bytearray(dest.read_bytes())
    data[where] ^= 0x40
    bad = tmp_path / "bad.cvbackup"
    bad.write_bytes(data)
    with pytest.raises(BackupError):
        archive.check_signature(bad, archive.read_layout(bad))


def test_bytes_appended_or_cut_are_refused(made, tmp_path):
    dest, _kek, _signer = made
    data = dest.read_bytes()
    for variant in (data + b"x", data[:-1], data[: len(data) // 3], b""):
        bad = tmp_path / "bad.cvbackup"
        bad.write_bytes(variant)
        with pytest.raises(BackupError):
            archive.check_signature(bad, archive.read_layout(bad))


def test_a_header_re_signed_by_a_stranger_names_the_strangers_key(made, tmp_path):
    _dest, kek, signer = made
    stranger = SigningKey.generate("Ed25519")
    body = tmp_path / "body.tar"
    again = tmp_path / "again.cvbackup"
    archive.write(again, body, {"backup_id": "b1", "created_at": "now"}, kek, stranger)
    layout = archive.read_layout(again)
    assert archive.check_signature(again, layout).key_id != signer.key_id


def test_only_the_master_key_that_made_it_opens_the_body(made, tmp_path):
    dest, _kek, _signer = made
    with pytest.raises(BackupError, match="another master key"):
        archive.decrypt_body(
            dest, archive.read_layout(dest), MasterKey.generate(), tmp_path / "x.tar"
        )
    assert not (tmp_path / "x.tar").exists()
