"""Sealed models: skops (never pickle) with an explicit trusted-types list, AES-256-GCM bound to
name and version, an Ed25519-signed manifest of SHA-256 digests, keys wrapped by the master key.
Every way of tampering is refused with a message that says what is wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from carevault.crypto import MasterKey
from carevault.modelstore.store import MANIFEST, PAYLOAD, SIGNATURE, ModelStore, SealedModelError
from carevault.security.detectors import IsolationForestDetector

TRUSTED = [
    "carevault.security.detectors.iforest.IsolationForestDetector",
    "sklearn.tree._tree.Tree",
]
X = np.random.default_rng(0).normal(size=(400, 5))


@pytest.fixture(scope="module")
def model() -> IsolationForestDetector:
    return IsolationForestDetector(n_estimators=10, random_state=0).fit(X)


@pytest.fixture(scope="module")
def master() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def store(tmp_path: Path, master: MasterKey) -> ModelStore:
    return ModelStore(tmp_path / "models", master)


def flip_byte(path: Path, offset: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_sealed_model_loads_back_and_scores_the_same(store, model):
    info = store.save("detector", model, trusted_types=TRUSTED, metadata={"auc": 0.987654321})
    loaded, loaded_info = store.load("detector", trusted_types=TRUSTED)
    np.testing.assert_array_equal(loaded.anomaly_score(X), model.anomaly_score(X))
    assert loaded_info.version == info.version == 1
    # Floats have no canonical form for signing: metadata keeps them as short decimal text.
    assert loaded_info.manifest["metadata"] == {"auc": "0.987654"}
    manifest = json.loads((info.path / MANIFEST).read_text())
    assert set(manifest["payload"]) == {"file", "sha256", "bytes"}
    assert len(manifest["plaintext_sha256"]) == 64


def test_the_payload_is_encrypted_and_the_keys_are_wrapped(store, model, tmp_path):
    info = store.save("detector", model, trusted_types=TRUSTED)
    payload = (info.path / PAYLOAD).read_bytes()
    assert b"IsolationForest" not in payload
    assert b"PK\x03\x04" not in payload
    key_files = sorted(p.name for p in (tmp_path / "models" / "keys").glob("*.wrapped"))
    assert len(key_files) == 2  # the model's keyring and the signing key
    for path in (tmp_path / "models" / "keys").glob("*.wrapped"):
        assert b"material" not in path.read_bytes()  # no keyring JSON in the clear


def test_versions_count_up_and_each_loads_on_its_own(store, model):
    store.save("detector", model, trusted_types=TRUSTED)
    store.save("detector", model, trusted_types=TRUSTED, metadata={"n": 2})
    assert store.versions("detector") == [1, 2]
    assert store.load("detector", trusted_types=TRUSTED)[1].version == 2
    assert store.load("detector", 1, trusted_types=TRUSTED)[1].version == 1
    with pytest.raises(SealedModelError, match="has no version 3"):
        store.load("detector", 3, trusted_types=TRUSTED)


def test_a_flipped_byte_in_the_payload_is_refused(store, model):
    info = store.save("detector", model, trusted_types=TRUSTED)
    flip_byte(info.path / PAYLOAD)
    with pytest.raises(SealedModelError, match="does not match its signed digest"):
        store.load("detector", trusted_types=TRUSTED)


def test_an_edited_manifest_is_refused(store, model):
    info = store.save("detector", model, trusted_types=TRUSTED)
    path = info.path / MANIFEST
    path.write_text(path.read_text().replace('"version": 1', '"version": 1, "extra": 1'))
    with pytest.raises(SealedModelError, match="signature does not verify"):
        store.load("detector", trusted_types=TRUSTED)


def test_a_payload_moved_to_another_version_does_not_decrypt_even_if_re_signed(store, model):
    first = store.save("detector", model, trusted_types=TRUSTED)
    second = store.save("detector", model, trusted_types=TRUSTED)
    # Someone holding the signing key moves v1's ciphertext under v2 and signs a matching
    # manifest: the encryption is bound to {"model", "version"}, so it still fails.
    shutil.copy(first.path / PAYLOAD, second.path / PAYLOAD)
    manifest = json.loads((second.path / MANIFEST).read_text())
    manifest["payload"] = json.loads((first.path / MANIFEST).read_text())["payload"]
    signature = store._signing_key(create=False).sign(manifest, purpose="sealed-model")
    (second.path / MANIFEST).write_text(json.dumps(manifest))
    (second.path / SIGNATURE).write_text(signature.to_text())
    with pytest.raises(SealedModelError, match="does not decrypt"):
        store.load("detector", 2, trusted_types=TRUSTED)


def test_an_older_version_copied_over_a_newer_one_is_refused(store, model):
    first = store.save("detector", model, trusted_types=TRUSTED)
    second = store.save("detector", model, trusted_types=TRUSTED)
    for name in (PAYLOAD, MANIFEST, SIGNATURE):
        shutil.copy(first.path / name, second.path / name)
    with pytest.raises(SealedModelError, match="wrong version"):
        store.load("detector", 2, trusted_types=TRUSTED)


def test_an_unsigned_model_is_refused(store, model):
    info = store.save("detector", model, trusted_types=TRUSTED)
    (info.path / SIGNATURE).unlink()
    with pytest.raises(SealedModelError, match="not signed"):
        store.load("detector", trusted_types=TRUSTED)


def test_a_model_sealed_by_another_installation_is_refused(store, model, tmp_path):
    info = store.save("detector", model, trusted_types=TRUSTED)
    other = ModelStore(tmp_path / "other", MasterKey.generate())
    other.save("detector", model, trusted_types=TRUSTED)
    for name in (PAYLOAD, MANIFEST, SIGNATURE):
        shutil.copy(tmp_path / "other" / "detector" / "v1" / name, info.path / name)
    with pytest.raises(SealedModelError, match="signature does not verify"):
        store.load("detector", trusted_types=TRUSTED)


def test_another_master_key_cannot_open_the_store(store, model, tmp_path):
    store.save("detector", model, trusted_types=TRUSTED)
    with pytest.raises(SealedModelError, match="master key"):
        ModelStore(tmp_path / "models", MasterKey.generate()).load(
            "detector", trusted_types=TRUSTED
        )


def test_types_outside_the_trusted_list_are_never_loaded_or_sealed(store, model):
    store.save("detector", model, trusted_types=TRUSTED)
    with pytest.raises(SealedModelError, match="untrusted types"):
        store.load("detector", trusted_types=TRUSTED[:1])
    with pytest.raises(SealedModelError, match="untrusted types"):
        store.save("detector", model, trusted_types=TRUSTED[:1])


def test_a_missing_model_says_how_to_make_one(store):
    with pytest.raises(SealedModelError, match="carevault security train"):
        store.load("detector", trusted_types=TRUSTED)
    with pytest.raises(SealedModelError, match="invalid model name"):
        store.load("../etc", trusted_types=TRUSTED)
