"""Key-encryption keys: wrapping keyrings under a master key or a KMS, master rotation, and the
resumable rewrap job."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from carevault.crypto import (
    ConfigurationError,
    DecryptionError,
    Keyring,
    KmsKey,
    MasterKey,
    Suite,
    parse_header,
    rewrap,
    rewrap_all,
    unwrap_keyring,
    wrap_keyring,
)
from carevault.crypto.kek import _keyring_context, keyring_context, master_versions_in_use

CONTEXT: dict[str, str | int] = {"table": "patients", "column": "name", "row": 1}


def assert_opaque_failure(error: pytest.ExceptionInfo[DecryptionError]) -> None:
    assert str(error.value) == "decryption failed"
    assert error.value.__cause__ is None
    assert error.value.__context__ is None or error.value.__suppress_context__


class DictKeyStore:
    """A real, in-memory WrappedKeyStore: what a database table of wrapped keyrings does."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def names(self) -> Iterable[str]:
        return sorted(self.blobs)

    def get(self, name: str) -> bytes:
        return self.blobs[name]

    def context(self, name: str) -> dict[str, str]:
        return keyring_context(name)

    def compare_and_swap(self, name: str, expected: bytes, new: bytes) -> bool:
        if self.blobs.get(name) != expected:
            return False
        self.blobs[name] = new
        return True


class RacingKeyStore(DictKeyStore):
    """A store where another writer replaces one blob right after the rewrap job has read it."""

    def __init__(self, racing: str) -> None:
        super().__init__()
        self.racing = racing
        self.replacement: bytes | None = None  # what the other writer stores, once

    def get(self, name: str) -> bytes:
        blob = super().get(name)
        if name == self.racing and self.replacement is not None:
            self.blobs[name], self.replacement = self.replacement, None
        return blob


class SoftwareKms:
    """A small but real KMS: one CareVault keyring per key URI, the AAD bound as context."""

    def __init__(self, *key_uris: str) -> None:
        self.keys = {uri: Keyring.generate(f"kms-{i}") for i, uri in enumerate(key_uris)}
        self.calls: list[tuple[str, str]] = []

    def encrypt(self, key_uri: str, plaintext: bytes, aad: bytes) -> bytes:
        self.calls.append(("encrypt", key_uri))
        return self.keys[key_uri].encrypt(plaintext, {"aad": aad.hex()})

    def decrypt(self, key_uri: str, ciphertext: bytes, aad: bytes) -> bytes:
        self.calls.append(("decrypt", key_uri))
        return self.keys[key_uri].decrypt(ciphertext, {"aad": aad.hex()})


class BrokenKms(SoftwareKms):
    def __init__(self, error: Exception, *key_uris: str) -> None:
        super().__init__(*key_uris)
        self.error = error

    def decrypt(self, key_uri: str, ciphertext: bytes, aad: bytes) -> bytes:
        raise self.error


def patient_keyring(name: str) -> tuple[Keyring, bytes]:
    """A patient's data keyring and one field it encrypted."""
    ring = Keyring.generate(name)
    return ring, ring.encrypt(f"record of {name}".encode(), CONTEXT)


def store_of(master: MasterKey, *names: str) -> tuple[DictKeyStore, dict[str, bytes]]:
    store, fields = DictKeyStore(), {}
    for name in names:
        ring, fields[name] = patient_keyring(name)
        store.blobs[name] = wrap_keyring(ring, master)
    return store, fields


def assert_data_keys_unchanged(
    store: DictKeyStore, master: MasterKey, fields: dict[str, bytes]
) -> None:
    for name, field in fields.items():
        ring = unwrap_keyring(store.get(name), master, name)
        assert ring.decrypt(field, CONTEXT) == f"record of {name}".encode()


# -- local master key ----------------------------------------------------------------------------


def test_a_wrapped_keyring_unwraps_to_the_same_keys() -> None:
    master = MasterKey.generate()
    ring, field = patient_keyring("patient-1")
    ring.rotate()
    blob = wrap_keyring(ring, master)
    assert ring.to_json() not in blob
    loaded = unwrap_keyring(blob, master, "patient-1")
    assert loaded.versions() == ring.versions()
    assert loaded.to_json() == ring.to_json()
    assert loaded.decrypt(field, CONTEXT) == b"record of patient-1"


def test_a_wrapped_keyring_does_not_unwrap_under_another_name() -> None:
    # Swapping two patients' wrapped keys in the database must not hand one the other's key.
    master = MasterKey.generate()
    blob = wrap_keyring(patient_keyring("patient-1")[0], master)
    with pytest.raises(DecryptionError) as excinfo:
        unwrap_keyring(blob, master, "patient-2")
    assert_opaque_failure(excinfo)


def test_a_keyring_sealed_under_another_keyrings_name_is_still_refused() -> None:
    # Defence in depth: even a blob whose context names "patient-2" must hold patient-2's ring.
    master = MasterKey.generate()
    ring = patient_keyring("patient-1")[0]
    blob = master.wrap(ring.to_json(), _keyring_context("patient-2"))
    with pytest.raises(DecryptionError) as excinfo:
        unwrap_keyring(blob, master, "patient-2")
    assert_opaque_failure(excinfo)


def test_a_wrapped_keyring_does_not_unwrap_under_another_master_key() -> None:
    blob = wrap_keyring(patient_keyring("patient-1")[0], MasterKey.generate())
    with pytest.raises(DecryptionError) as excinfo:
        unwrap_keyring(blob, MasterKey.generate(), "patient-1")
    assert_opaque_failure(excinfo)


def test_a_tampered_wrapped_keyring_does_not_unwrap() -> None:
    master = MasterKey.generate()
    blob = bytearray(wrap_keyring(patient_keyring("patient-1")[0], master))
    blob[-1] ^= 1
    with pytest.raises(DecryptionError):
        unwrap_keyring(bytes(blob), master, "patient-1")


def test_after_master_rotation_a_rewrap_is_current_and_the_data_keys_are_unchanged() -> None:
    master = MasterKey.generate()
    ring, field = patient_keyring("patient-1")
    blob = wrap_keyring(ring, master)
    assert master.is_current(blob)
    assert rewrap(blob, master, "patient-1") is blob  # nothing to do: not even a copy

    assert master.rotate() == 2
    assert not master.is_current(blob)
    new_blob = rewrap(blob, master, "patient-1")
    assert master.is_current(new_blob)
    assert parse_header(new_blob).key_id == 2
    rewrapped = unwrap_keyring(new_blob, master, "patient-1")
    assert rewrapped.to_json() == ring.to_json()
    assert rewrapped.decrypt(field, CONTEXT) == b"record of patient-1"
    # The old blob still opens until the old master version is retired.
    assert unwrap_keyring(blob, master, "patient-1").to_json() == ring.to_json()


def test_a_rewrap_under_the_wrong_name_fails() -> None:
    master = MasterKey.generate()
    blob = wrap_keyring(patient_keyring("patient-1")[0], master)
    master.rotate()
    with pytest.raises(DecryptionError):
        rewrap(blob, master, "patient-2")


def test_rewrap_all_rewraps_every_keyring_and_a_second_run_has_nothing_to_do() -> None:
    master = MasterKey.generate()
    names = ("patient-1", "patient-2", "patient-3")
    store, fields = store_of(master, *names)
    master.rotate()

    report = rewrap_all(store, master)
    assert sorted(report.rewrapped) == list(names)
    assert report.already_current == report.failed == report.changed_meanwhile == []
    assert report.complete
    assert all(master.is_current(store.get(name)) for name in names)
    assert master_versions_in_use(store) == {2}
    assert_data_keys_unchanged(store, master, fields)

    again = rewrap_all(store, master)
    assert sorted(again.already_current) == list(names)
    assert again.rewrapped == []
    assert again.complete


def test_an_interrupted_rewrap_is_finished_by_running_it_again() -> None:
    master = MasterKey.generate()
    store, fields = store_of(master, "patient-1", "patient-2", "patient-3")
    master.rotate()
    # The first run stopped after one keyring.
    store.blobs["patient-2"] = rewrap(store.get("patient-2"), master, "patient-2")
    assert master_versions_in_use(store) == {1, 2}

    report = rewrap_all(store, master)
    assert report.already_current == ["patient-2"]
    assert sorted(report.rewrapped) == ["patient-1", "patient-3"]
    assert master_versions_in_use(store) == {2}
    assert_data_keys_unchanged(store, master, fields)


def test_a_keyring_changed_while_it_was_rewrapped_is_reported_and_not_overwritten() -> None:
    master = MasterKey.generate()
    ring, _ = patient_keyring("patient-2")
    store = RacingKeyStore("patient-2")
    for name in ("patient-1", "patient-2"):
        store.blobs[name] = wrap_keyring(patient_keyring(name)[0], master)
    master.rotate()
    # Meanwhile, another worker rotated patient-2's data key and stored it (under master v2).
    ring.rotate()
    concurrent = store.replacement = wrap_keyring(ring, master)

    report = rewrap_all(store, master)
    assert report.changed_meanwhile == ["patient-2"]
    assert report.rewrapped == ["patient-1"]
    assert not report.complete
    assert store.get("patient-2") == concurrent  # the other writer's version survives
    assert unwrap_keyring(store.get("patient-2"), master, "patient-2").primary.version == 2

    again = rewrap_all(store, master)
    assert again.complete
    assert sorted(again.already_current) == ["patient-1", "patient-2"]


def test_a_keyring_the_master_key_cannot_open_is_reported_as_failed_and_left_alone() -> None:
    master = MasterKey.generate()
    store, _ = store_of(master, "patient-1")
    store.blobs["stranger"] = wrap_keyring(Keyring.generate("stranger"), MasterKey.generate())
    store.blobs["garbage"] = b"not a wrapped keyring at all"
    stranger = store.get("stranger")
    master.rotate()

    report = rewrap_all(store, master)
    assert sorted(report.failed) == ["garbage", "stranger"]
    assert report.rewrapped == ["patient-1"]
    assert not report.complete
    assert store.get("stranger") == stranger
    assert store.get("garbage") == b"not a wrapped keyring at all"


def test_master_versions_in_use_names_each_version_that_still_wraps_something() -> None:
    master = MasterKey.generate()
    store, _ = store_of(master, "patient-1")
    master.rotate()
    store.blobs["patient-2"] = wrap_keyring(Keyring.generate("patient-2"), master)
    store.blobs["garbage"] = b"?"
    assert master_versions_in_use(store) == {1, 2}
    assert master_versions_in_use(DictKeyStore()) == set()


@pytest.mark.parametrize(
    "suite", [Suite.AES_128_GCM, Suite.AES_192_GCM, Suite.HYBRID_X25519_AES_256_GCM], ids=str
)
def test_a_master_key_must_be_aes_256(suite: Suite) -> None:
    with pytest.raises(ConfigurationError, match="AES-256-GCM"):
        MasterKey(Keyring.generate("master", suite))


def test_a_master_key_refuses_any_live_version_that_is_not_aes_256() -> None:
    ring = Keyring.generate("master", Suite.AES_128_GCM)
    ring.rotate(Suite.AES_256_GCM)
    with pytest.raises(ConfigurationError, match="v1"):
        MasterKey(ring)
    ring.destroy(1)  # a destroyed version wraps nothing any more
    assert MasterKey(ring).keyring is ring


def test_printing_a_master_key_shows_its_version_and_no_key_bytes() -> None:
    master = MasterKey.generate()
    shown = repr(master)
    assert "v1" in shown
    assert master.description == "local master key v1"
    (version,) = json.loads(master.keyring.to_json())["versions"]
    assert version["material"]["k"] not in shown


# -- KMS -----------------------------------------------------------------------------------------


def test_a_keyring_wrapped_by_a_kms_key_round_trips_through_the_kms() -> None:
    kms = SoftwareKms("kms://clinic/master")
    kek = KmsKey(kms, "kms://clinic/master")
    ring, field = patient_keyring("patient-1")
    blob = wrap_keyring(ring, kek)
    assert ring.to_json() not in blob
    assert kek.is_current(blob)
    loaded = unwrap_keyring(blob, kek, "patient-1")
    assert loaded.decrypt(field, CONTEXT) == b"record of patient-1"
    assert kms.calls == [("encrypt", "kms://clinic/master"), ("decrypt", "kms://clinic/master")]
    assert kek.description == "KMS key kms://clinic/master"


def test_a_kms_wrapped_keyring_is_bound_to_its_name() -> None:
    kek = KmsKey(SoftwareKms("kms://a"), "kms://a")
    blob = wrap_keyring(patient_keyring("patient-1")[0], kek)
    with pytest.raises(DecryptionError) as excinfo:
        unwrap_keyring(blob, kek, "patient-2")
    assert_opaque_failure(excinfo)


def test_a_kms_blob_whose_key_uri_was_edited_fails() -> None:
    kms = SoftwareKms("kms://a", "kms://b")
    blob = wrap_keyring(patient_keyring("patient-1")[0], KmsKey(kms, "kms://a"))
    edited = blob.replace(b"kms://a", b"kms://b", 1)
    with pytest.raises(DecryptionError):
        unwrap_keyring(edited, KmsKey(kms, "kms://b"), "patient-1")


def test_moving_to_a_new_kms_key_is_a_rewrap() -> None:
    kms = SoftwareKms("kms://old", "kms://new")
    old_kek, new_kek = KmsKey(kms, "kms://old"), KmsKey(kms, "kms://new")
    ring, field = patient_keyring("patient-1")
    blob = wrap_keyring(ring, old_kek)
    assert not new_kek.is_current(blob)

    store = DictKeyStore()
    store.blobs["patient-1"] = blob
    report = rewrap_all(store, new_kek)
    assert report.rewrapped == ["patient-1"]
    moved = store.get("patient-1")
    assert new_kek.is_current(moved)
    assert not old_kek.is_current(moved)
    # The blob names its KMS key, so the new one opens and the old key is no longer needed.
    del kms.keys["kms://old"]
    assert unwrap_keyring(moved, new_kek, "patient-1").decrypt(field, CONTEXT) == (
        b"record of patient-1"
    )
    assert rewrap_all(store, new_kek).already_current == ["patient-1"]


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("throttled: patient-1 SECRET-DETAIL"),
        KeyError("kms://a"),
        ValueError("bad ciphertext"),
        ConnectionError("kms unreachable"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_any_kms_client_error_on_unwrap_becomes_the_one_decryption_error(
    error: Exception,
) -> None:
    blob = wrap_keyring(patient_keyring("patient-1")[0], KmsKey(SoftwareKms("kms://a"), "kms://a"))
    broken = KmsKey(BrokenKms(error, "kms://a"), "kms://a")
    with pytest.raises(DecryptionError) as excinfo:
        unwrap_keyring(blob, broken, "patient-1")
    assert_opaque_failure(excinfo)
    assert "SECRET-DETAIL" not in repr(excinfo.value)


def test_a_kms_key_the_client_no_longer_knows_fails_like_any_bad_ciphertext() -> None:
    kms = SoftwareKms("kms://a")
    kek = KmsKey(kms, "kms://a")
    blob = wrap_keyring(patient_keyring("patient-1")[0], kek)
    kms.keys.clear()
    with pytest.raises(DecryptionError) as excinfo:
        unwrap_keyring(blob, kek, "patient-1")
    assert_opaque_failure(excinfo)


@pytest.mark.parametrize(
    "blob", [b"", b"CVK", b"CVK\x01", b"CVK\x01\x00", b"XXXX\x00\x01a", b"CVK\x01\x00\x02\xff\xfe"]
)
def test_a_malformed_kms_blob_fails_like_any_bad_ciphertext(blob: bytes) -> None:
    kek = KmsKey(SoftwareKms("kms://a"), "kms://a")
    with pytest.raises(DecryptionError) as excinfo:
        kek.unwrap(blob, CONTEXT)
    assert_opaque_failure(excinfo)


def test_a_kms_key_needs_a_key_uri() -> None:
    with pytest.raises(ConfigurationError, match="key URI"):
        KmsKey(SoftwareKms(), "")
