"""Master-key providers: an owner-only file, the environment, a KMS."""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from pathlib import Path

import pytest

from carevault.crypto import (
    EnvMasterKeyProvider,
    FileMasterKeyProvider,
    KeyProviderError,
    Keyring,
    KeyState,
    KmsKey,
    KmsMasterKeyProvider,
    MasterKey,
    Suite,
    WeakKeyError,
    parse_header,
    unwrap_keyring,
    wrap_keyring,
)

VARIABLE = "CAREVAULT_MASTER_KEY"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def env(value: str) -> EnvMasterKeyProvider:
    return EnvMasterKeyProvider({VARIABLE: value})


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- file ----------------------------------------------------------------------------------------


def test_a_created_master_key_file_loads_back_and_unwraps_what_it_wrapped(tmp_path: Path) -> None:
    provider = FileMasterKeyProvider(tmp_path / "keys" / "master.key")
    assert not provider.exists()
    created = provider.create()
    assert provider.exists()
    ring = Keyring.generate("patient-1")
    field = ring.encrypt(b"x", {"row": 1})
    blob = wrap_keyring(ring, created)

    loaded = provider.load()
    assert [(i.version, i.suite, i.state, i.created_at) for i in loaded.keyring.versions()] == [
        (i.version, i.suite, i.state, i.created_at) for i in created.keyring.versions()
    ]
    assert unwrap_keyring(blob, loaded, "patient-1").decrypt(field, {"row": 1}) == b"x"
    assert str(tmp_path / "keys" / "master.key") in provider.description


def test_the_master_key_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    FileMasterKeyProvider(path).create()
    assert mode_of(path) == 0o600


def test_create_never_replaces_an_existing_master_key(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    FileMasterKeyProvider(path).create()
    before = path.read_bytes()
    with pytest.raises(KeyProviderError, match="already exists"):
        FileMasterKeyProvider(path).create()
    assert path.read_bytes() == before


def test_a_rotated_master_key_is_saved_atomically_and_loads_with_both_versions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "master.key"
    provider = FileMasterKeyProvider(path)
    master = provider.create()
    old_blob = wrap_keyring(Keyring.generate("patient-1"), master)
    master.rotate()
    provider.save(master)

    assert sorted(os.listdir(tmp_path)) == ["master.key"]  # no temporary *.part file left
    assert mode_of(path) == 0o600
    loaded = provider.load()
    assert [(i.version, i.state) for i in loaded.keyring.versions()] == [
        (1, KeyState.DECRYPT_ONLY),
        (2, KeyState.PRIMARY),
    ]
    assert not loaded.is_current(old_blob)
    assert unwrap_keyring(old_blob, loaded, "patient-1").name == "patient-1"


def test_saving_over_a_loose_file_makes_it_owner_only_again(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    provider = FileMasterKeyProvider(path)
    master = provider.create()
    path.chmod(0o644)
    provider.save(master)
    assert mode_of(path) == 0o600
    assert provider.load().keyring.primary.version == 1


def test_loading_a_missing_master_key_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(KeyProviderError, match="carevault keys init") as excinfo:
        FileMasterKeyProvider(tmp_path / "absent.key").load()
    assert "CAREVAULT_MASTER_KEY" in str(excinfo.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o610])
def test_a_master_key_file_other_users_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    FileMasterKeyProvider(path).create()
    path.chmod(mode)
    with pytest.raises(KeyProviderError, match="chmod 600"):
        FileMasterKeyProvider(path).load()


def test_a_master_key_file_that_is_a_directory_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(KeyProviderError, match="cannot read"):
        FileMasterKeyProvider(tmp_path).load()


def master_file(keyring: object) -> bytes:
    return json.dumps({"format": "carevault-master-key/1", "keyring": keyring}).encode()


@pytest.mark.parametrize(
    "content",
    [
        b"garbage",
        b"",
        b"[]",
        b"null",
        b'{"format": "carevault-master-key/1"}',
    ],
    ids=["text", "empty", "list", "null", "no-keyring"],
)
def test_garbage_is_not_a_valid_master_key_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyProviderError, match="not a valid CareVault master key file"):
        FileMasterKeyProvider(path).load()


@pytest.mark.parametrize(
    "keyring",
    ["not a keyring", [], {}, {"format": 1}],
    ids=["text", "list", "empty-object", "no-fields"],
)
def test_a_master_key_file_with_a_malformed_keyring_is_refused_and_named(
    tmp_path: Path, keyring: object
) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(master_file(keyring))
    path.chmod(0o600)
    with pytest.raises(KeyProviderError, match="keyring") as excinfo:
        FileMasterKeyProvider(path).load()
    assert str(path) in str(excinfo.value)


def test_a_file_of_another_format_is_not_a_master_key_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(b'{"format": "ssh-key", "keyring": {}}')
    path.chmod(0o600)
    with pytest.raises(KeyProviderError, match="not a CareVault master key file"):
        FileMasterKeyProvider(path).load()


def test_a_master_key_file_holding_a_weaker_suite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(
        master_file(json.loads(Keyring.generate("master", Suite.AES_128_GCM).to_json()))
    )
    path.chmod(0o600)
    with pytest.raises(KeyProviderError, match="AES-256-GCM"):
        FileMasterKeyProvider(path).load()


# -- environment ---------------------------------------------------------------------------------


def test_the_last_version_listed_in_the_environment_is_primary() -> None:
    k1, k2 = secrets.token_bytes(32), secrets.token_bytes(32)
    written_by_v1 = env(f"1:{b64(k1)}").load().wrap(b"data key", {"row": 1})

    master = env(f"1:{b64(k1)},2:{b64(k2)}").load()
    assert [(i.version, i.state) for i in master.keyring.versions()] == [
        (1, KeyState.DECRYPT_ONLY),
        (2, KeyState.PRIMARY),
    ]
    assert parse_header(master.wrap(b"data key", {"row": 1})).key_id == 2
    assert master.unwrap(written_by_v1, {"row": 1}) == b"data key"
    assert not master.is_current(written_by_v1)


def test_environment_versions_need_not_start_at_one_and_tolerate_spaces() -> None:
    k5, k7 = secrets.token_bytes(32), secrets.token_bytes(32)
    master = env(f" 5:{b64(k5)} , 7:{b64(k7)} ").load()
    assert [i.version for i in master.keyring.versions()] == [5, 7]
    assert master.keyring.primary.version == 7
    # The same key bytes give the same master key: v5 here opens what v5 alone wrapped.
    blob = env(f"5:{b64(k5)}").load().wrap(b"k", {"row": 1})
    assert master.unwrap(blob, {"row": 1}) == b"k"


def test_a_bare_base64_key_in_the_environment_is_version_1() -> None:
    key = secrets.token_bytes(32)
    master = env(b64(key)).load()
    assert [(i.version, i.state) for i in master.keyring.versions()] == [(1, KeyState.PRIMARY)]
    blob = master.wrap(b"k", {"row": 1})
    assert parse_header(blob).key_id == 1
    assert env(f"1:{b64(key)}").load().unwrap(blob, {"row": 1}) == b"k"


@pytest.mark.parametrize("length", [0, 16, 24, 31, 33, 64])
def test_an_environment_key_that_is_not_32_bytes_is_refused_as_weak(length: int) -> None:
    key = secrets.token_bytes(length)
    with pytest.raises(WeakKeyError, match="32-byte") as excinfo:
        env(f"1:{b64(secrets.token_bytes(32))},2:{b64(key)}").load()
    if key:
        assert b64(key) not in str(excinfo.value)


@pytest.mark.parametrize(
    ("value", "position"),
    [
        ("1:not*base64!", 1),
        (f"1:{b64(b'k' * 32)},2:@@@@", 2),
        (f"one:{b64(b'k' * 32)}", 1),
        (f"1:{b64(b'k' * 32)},2:{b64(b'k' * 32)},x:{b64(b'k' * 32)}", 3),
        (f"1:{b64(b'k' * 32)},2:{b64(b'k' * 32)}=", 2),
        ("1:élan", 1),
    ],
)
def test_a_malformed_environment_value_names_the_item_position_but_not_the_value(
    value: str, position: int
) -> None:
    with pytest.raises(KeyProviderError, match=f"item {position} is not") as excinfo:
        env(value).load()
    message = str(excinfo.value)
    assert VARIABLE in message
    for item in value.split(","):
        assert item.strip().rpartition(":")[2] not in message


@pytest.mark.parametrize("value", ["1:{k},1:{k}", "0:{k}", "-1:{k}"])
def test_environment_versions_must_be_distinct_positive_numbers(value: str) -> None:
    with pytest.raises(KeyProviderError, match="distinct positive"):
        env(value.format(k=b64(secrets.token_bytes(32)))).load()


@pytest.mark.parametrize("environ", [{}, {VARIABLE: ""}, {VARIABLE: "  \n"}])
def test_an_unset_environment_variable_is_refused(environ: dict[str, str]) -> None:
    provider = EnvMasterKeyProvider(environ)
    assert not provider.is_set()
    with pytest.raises(KeyProviderError, match=f"{VARIABLE} is not set"):
        provider.load()


def test_the_variable_name_can_be_chosen() -> None:
    provider = EnvMasterKeyProvider({"OTHER_KEY": b64(secrets.token_bytes(32))}, "OTHER_KEY")
    assert provider.is_set()
    assert provider.description == "environment variable OTHER_KEY"
    assert provider.load().keyring.primary.version == 1


def test_new_value_produces_a_fresh_loadable_version_1() -> None:
    first, second = EnvMasterKeyProvider.new_value(), EnvMasterKeyProvider.new_value()
    assert first != second
    assert first.startswith("1:")
    master = env(first).load()
    assert isinstance(master, MasterKey)
    assert master.keyring.primary.version == 1
    assert master.keyring.primary.suite is Suite.AES_256_GCM
    assert master.unwrap(master.wrap(b"k", {"row": 1}), {"row": 1}) == b"k"


# -- KMS -----------------------------------------------------------------------------------------


class SoftwareKms:
    """A small but real KMS: one CareVault keyring per key URI, the AAD bound as context."""

    def __init__(self, key_uri: str) -> None:
        self.keys = {key_uri: Keyring.generate("kms")}

    def encrypt(self, key_uri: str, plaintext: bytes, aad: bytes) -> bytes:
        return self.keys[key_uri].encrypt(plaintext, {"aad": aad.hex()})

    def decrypt(self, key_uri: str, ciphertext: bytes, aad: bytes) -> bytes:
        return self.keys[key_uri].decrypt(ciphertext, {"aad": aad.hex()})


def test_the_kms_provider_hands_out_a_key_that_stays_in_the_kms() -> None:
    provider = KmsMasterKeyProvider(SoftwareKms("kms://clinic/master"), "kms://clinic/master")
    kek = provider.load()
    assert isinstance(kek, KmsKey)
    assert provider.description == "KMS key kms://clinic/master"
    ring = Keyring.generate("patient-1")
    assert unwrap_keyring(wrap_keyring(ring, kek), kek, "patient-1").to_json() == ring.to_json()


def test_a_long_lived_holder_sees_a_rotation_of_the_master_key_file(tmp_path):
    from carevault.crypto.providers import CurrentMasterKey

    provider = FileMasterKeyProvider(tmp_path / "master.json")
    provider.create()
    held = CurrentMasterKey(provider)
    old_blob = held.wrap(b"model key", {"purpose": "test"})
    # Another process rotates the file and rewraps under the new version.
    rotated = provider.load()
    rotated.rotate()
    provider.save(rotated)
    new_blob = rotated.wrap(b"model key", {"purpose": "test"})
    assert held.unwrap(new_blob, {"purpose": "test"}) == b"model key"
    assert held.unwrap(old_blob, {"purpose": "test"}) == b"model key"
    assert held.is_current(new_blob)
    assert not held.is_current(old_blob)
