"""`carevault keys rotate` is safe to kill and to run again (issue 13): an interrupted rotation is
finished at the version it was making, never by adding another; every wrapped secret, the
encrypted outbox's messages included, ends under that version, so the old one can be retired."""

from __future__ import annotations

from pathlib import Path

import pytest

from carevault import faults, keyrotation
from carevault.crypto import FileMasterKeyProvider, Keyring, wrap_keyring
from carevault.crypto.envelope import key_id_of
from carevault.crypto.keystore import DirectoryKeyStore
from carevault.web.accounts.outbox_store import OutboxKeyStore, message_context


class Killed(Exception):
    """Stands in for SIGKILL inside this process."""


@pytest.fixture
def setup(tmp_path: Path):
    provider = FileMasterKeyProvider(tmp_path / "keys" / "master.json")
    master = provider.create()
    keys = DirectoryKeyStore(tmp_path / "keys" / "wrapped")
    for n in range(4):
        keys.put(f"patient:{n}", wrap_keyring(Keyring.generate(f"patient:{n}"), master))
    outbox = OutboxKeyStore(tmp_path / "outbox")
    outbox.directory.mkdir()
    for n in range(3):
        name = f"0000{n}-abc.msg"
        (outbox.directory / name).write_bytes(master.wrap(b'{"body": "hi"}', message_context(name)))
    return provider, [("directory", keys), ("outbox", outbox)]


def versions_in_use(stores) -> set[int]:
    return {key_id_of(store.get(name)) for _, store in stores for name in store.names()}


def test_a_rotation_killed_half_way_is_finished_at_the_same_version(setup, monkeypatch):
    provider, stores = setup
    calls = {"n": 0}

    def dies_on_the_fifth_point(label: str) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise Killed(label)

    monkeypatch.setattr(faults, "point", dies_on_the_fifth_point)
    with pytest.raises(Killed):
        keyrotation.rotate(provider, stores)
    assert keyrotation.pending_target(provider) == 2
    assert versions_in_use(stores) == {1, 2}  # half rewrapped
    monkeypatch.setattr(faults, "point", lambda label: None)

    again = keyrotation.rotate(provider, stores)
    assert (again.master_version, again.resumed, again.report.complete) == (2, True, True)
    assert len(provider.load().keyring.versions()) == 2
    assert versions_in_use(stores) == {2}
    assert keyrotation.pending_target(provider) is None
    # Finished: the next run is a new rotation.
    assert keyrotation.rotate(provider, stores).master_version == 3


def test_killed_before_the_master_file_was_saved_the_rerun_makes_the_noted_version(
    setup, monkeypatch
):
    provider, stores = setup

    def dies_once_noted(label: str) -> None:
        if label == "rotate.noted":
            raise Killed(label)

    monkeypatch.setattr(faults, "point", dies_once_noted)
    with pytest.raises(Killed):
        keyrotation.rotate(provider, stores)
    assert provider.load().keyring.primary.version == 1
    monkeypatch.setattr(faults, "point", lambda label: None)
    assert keyrotation.rotate(provider, stores).master_version == 2
    assert len(provider.load().keyring.versions()) == 2


def test_outbox_messages_still_open_once_the_old_version_is_destroyed(setup):
    provider, stores = setup
    keyrotation.rotate(provider, stores)
    master = provider.load()
    master.keyring.destroy(1)
    provider.save(master)
    outbox = dict(stores)["outbox"]
    for name in outbox.names():
        assert provider.load().unwrap(outbox.get(name), message_context(name)) == b'{"body": "hi"}'


def test_a_key_a_stale_server_wraps_under_the_old_version_meanwhile_is_caught(setup):
    provider, stores = setup
    old_master = provider.load()
    keys = dict(stores)["directory"]
    real_swap = keys.compare_and_swap

    def swap_while_a_server_writes(name: str, expected: bytes, new: bytes) -> bool:
        if "patient:late" not in keys:
            # A server that loaded the master just before the rotation saved it wraps a key.
            keys.put("patient:late", wrap_keyring(Keyring.generate("patient:late"), old_master))
        return real_swap(name, expected, new)

    keys.compare_and_swap = swap_while_a_server_writes  # type: ignore[method-assign]
    done = keyrotation.rotate(provider, stores)
    assert done.report.complete
    assert "patient:late" in done.report.rewrapped
    assert versions_in_use(stores) == {2}
