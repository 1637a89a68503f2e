"""The signed checkpoint file: lines signed with the anchor key (wrapped by the master key),
append-only and owner-only, checkable with the public key alone, copied to an external file."""

from __future__ import annotations

import json
import stat

import pytest

from carevault.crypto import MasterKey, Signature, VerifyKey, rewrap_all
from carevault.modelstore.anchor import (
    CHECKPOINTS,
    ENV_ANCHOR_FILE,
    PUBLIC_KEY,
    PURPOSE,
    Anchor,
    AnchorError,
    external_path,
)


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


def test_records_are_appended_signed_and_read_back(tmp_path, master):
    anchor = Anchor(tmp_path, master, external=None)
    first = anchor.append("audit", {"seq": 1, "head": "a", "count": 1})
    second = anchor.append("audit", {"seq": 2, "head": "b", "count": 2})
    state = anchor.read()
    assert state.problems == []
    assert state.records == [first, second]
    assert anchor.latest("audit") == second
    assert len((tmp_path / CHECKPOINTS).read_text().splitlines()) == 2


def test_the_file_and_its_directory_are_owner_only(tmp_path, master):
    Anchor(tmp_path, master, external=None).append("audit", {"seq": 1, "head": "a", "count": 1})
    assert stat.S_IMODE((tmp_path / CHECKPOINTS).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / CHECKPOINTS).parent.stat().st_mode) == 0o700


def test_a_line_verifies_with_the_published_public_key_alone(tmp_path, master):
    record = Anchor(tmp_path, master, external=None).append("audit", {"seq": 3, "head": "c"})
    public = VerifyKey.from_bytes("Ed25519", bytes.fromhex((tmp_path / PUBLIC_KEY).read_text()))
    line = json.loads((tmp_path / CHECKPOINTS).read_text())
    body = {k: v for k, v in line.items() if k != "signature"}
    public.verify(body, Signature.from_text(line["signature"]), purpose=PURPOSE)
    assert line == record


def test_an_edited_line_is_reported_as_forged_and_ignored(tmp_path, master):
    anchor = Anchor(tmp_path, master, external=None)
    anchor.append("audit", {"seq": 5, "head": "e", "count": 5})
    path = tmp_path / CHECKPOINTS
    path.write_text(path.read_text().replace('"seq": 5', '"seq": 9'))
    state = anchor.read()
    assert state.records == []
    assert state.problems == ["local checkpoint line 1: the signature does not verify (forged)"]


def test_a_line_signed_by_another_installation_is_forged(tmp_path, master):
    other = tmp_path / "other"
    Anchor(other, MasterKey.generate(), external=None).append("audit", {"seq": 7, "head": "x"})
    anchor = Anchor(tmp_path, master, external=None)
    anchor.append("audit", {"seq": 1, "head": "a"})
    with (tmp_path / CHECKPOINTS).open("a") as out:
        out.write((other / CHECKPOINTS).read_text())
    assert anchor.read().problems == [
        "local checkpoint line 2: the signature does not verify (forged)"
    ]


def test_a_deleted_key_means_no_checkpoint_can_be_trusted(tmp_path, master):
    anchor = Anchor(tmp_path, master, external=None)
    anchor.append("model", {"model": "m", "version": 2, "manifest_sha256": "s"})
    for path in anchor.keys.directory.iterdir():
        path.unlink()
    with pytest.raises(AnchorError, match="anchor key is missing"):
        anchor.model_floor("m")


def test_the_highest_model_mark_is_the_floor(tmp_path, master):
    anchor = Anchor(tmp_path, master, external=None)
    for version in (1, 3, 2):
        anchor.append("model", {"model": "m", "version": version, "manifest_sha256": str(version)})
    anchor.append("model", {"model": "n", "version": 9, "manifest_sha256": "9"})
    assert anchor.model_floor("m")["version"] == 3
    assert anchor.model_floor("unknown") is None


def test_the_key_survives_a_master_key_rotation(tmp_path, master):
    anchor = Anchor(tmp_path, master, external=None)
    anchor.append("audit", {"seq": 1, "head": "a"})
    master.rotate()
    assert rewrap_all(anchor.keys, master).complete
    anchor.append("audit", {"seq": 2, "head": "b"})
    assert anchor.read().problems == []
    assert len(anchor.read().records) == 2


def test_the_external_copy_is_configured_by_a_file_path(tmp_path, master):
    target = tmp_path / "worm" / "carevault-anchor.jsonl"
    assert external_path({ENV_ANCHOR_FILE: str(target)}) == target
    assert external_path({}) is None
    anchor = Anchor(tmp_path / "data", master, external=target)
    anchor.append("audit", {"seq": 1, "head": "a"})
    assert target.read_text() == (tmp_path / "data" / CHECKPOINTS).read_text()


def test_a_deleted_local_file_is_reported_and_the_external_copy_still_counts(tmp_path, master):
    target = tmp_path / "external.jsonl"
    anchor = Anchor(tmp_path / "data", master, external=target)
    anchor.append("audit", {"seq": 4, "head": "d", "count": 4})
    (tmp_path / "data" / CHECKPOINTS).unlink()
    state = anchor.read()
    assert state.latest("audit")["seq"] == 4
    assert state.problems == [
        "the local checkpoint file lacks 1 checkpoint(s) that the external anchor holds "
        "(truncated or replaced)"
    ]
