"""Rollback protection of the sealed model store: an encrypted, authenticated high-water record
per model name means that deleting, replacing or hiding the newest version is refused instead of
silently serving an older, validly signed model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from carevault.crypto import MasterKey, rewrap_all
from carevault.modelstore.store import (
    HIGH_WATER,
    MANIFEST,
    PAYLOAD,
    SIGNATURE,
    ModelStore,
    RollbackError,
    SealedModelError,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 3))
Y = (X[:, 0] > 0).astype(int)
TRUSTED: list[str] = []  # a plain scikit-learn estimator needs nothing beyond skops' defaults


def model(c: float = 1.0) -> LogisticRegression:
    return LogisticRegression(C=c).fit(X, Y)


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def store(tmp_path: Path, master: MasterKey) -> ModelStore:
    return ModelStore(tmp_path / "models", master)


def test_deleting_the_newest_version_is_refused_as_a_rollback_naming_the_model(store):
    store.save("diagnosis-logistic", model(1.0), trusted_types=TRUSTED)
    newest = store.save("diagnosis-logistic", model(0.1), trusted_types=TRUSTED)
    shutil.rmtree(newest.path)
    with pytest.raises(RollbackError, match=r"'diagnosis-logistic'.*v2 is missing") as caught:
        store.load("diagnosis-logistic", trusted_types=TRUSTED)
    assert caught.value.reason == "rollback"
    assert "carevault model train" in str(caught.value)
    with pytest.raises(RollbackError):
        store.inspect("diagnosis-logistic")


def test_deleting_every_version_but_the_record_is_refused_as_a_rollback(store):
    info = store.save("diagnosis-forest", model(), trusted_types=TRUSTED)
    shutil.rmtree(info.path)
    with pytest.raises(RollbackError, match=r"v1 is missing.*nothing left"):
        store.load("diagnosis-forest", trusted_types=TRUSTED)


def test_deleting_the_high_water_record_is_refused(store):
    info = store.save("risk-ensemble", model(), trusted_types=TRUSTED)
    (info.path.parent / HIGH_WATER).unlink()
    with pytest.raises(RollbackError, match=r"no high-water record.*carevault security train"):
        store.load("risk-ensemble", trusted_types=TRUSTED)


def test_an_edited_high_water_record_is_refused_and_blocks_sealing_over_it(store):
    info = store.save("detector", model(), trusted_types=TRUSTED)
    record = info.path.parent / HIGH_WATER
    data = bytearray(record.read_bytes())
    data[-5] ^= 0x01
    record.write_bytes(bytes(data))
    with pytest.raises(SealedModelError, match="high-water record does not open") as caught:
        store.load("detector", trusted_types=TRUSTED)
    assert caught.value.reason == "tampered"
    with pytest.raises(SealedModelError, match="high-water record does not open"):
        store.save("detector", model(), trusted_types=TRUSTED)


def test_a_record_copied_from_another_model_does_not_open(store):
    store.save("diagnosis-logistic", model(), trusted_types=TRUSTED)
    store.save("diagnosis-logistic", model(), trusted_types=TRUSTED)
    other = store.save("diagnosis-forest", model(), trusted_types=TRUSTED)
    shutil.copy(store.root / "diagnosis-logistic" / HIGH_WATER, other.path.parent / HIGH_WATER)
    with pytest.raises(SealedModelError, match="high-water record does not open"):
        store.load("diagnosis-forest", trusted_types=TRUSTED)


def test_the_record_is_encrypted(store):
    info = store.save("detector", model(), trusted_types=TRUSTED)
    raw = (info.path.parent / HIGH_WATER).read_bytes()
    assert b"high-water" not in raw
    assert info.manifest["model"].encode() not in raw


def test_an_older_seal_of_the_same_number_put_back_is_refused(store, tmp_path):
    store.save("detector", model(1.0), trusted_types=TRUSTED)
    snapshot = tmp_path / "snapshot"
    shutil.copytree(store.root, snapshot)
    first_v2 = store.save("detector", model(0.5), trusted_types=TRUSTED)
    kept = tmp_path / "kept-v2"
    shutil.copytree(first_v2.path, kept)
    # The directory goes back to the snapshot and v2 is sealed again by the key holder (a
    # restored backup, say); the attacker then puts the first v2's files back: signed with the
    # same key, encrypted under the same keyring and number, but not the v2 the record names.
    shutil.rmtree(store.root)
    shutil.copytree(snapshot, store.root)
    second_v2 = store.save("detector", model(0.01), trusted_types=TRUSTED)
    assert second_v2.version == 2
    for name in (PAYLOAD, MANIFEST, SIGNATURE):
        shutil.copy(kept / name, second_v2.path / name)
    with pytest.raises(RollbackError, match="not the v2 sealed last"):
        store.load("detector", trusted_types=TRUSTED)
    with pytest.raises(RollbackError, match="not the v2 sealed last"):
        store.inspect("detector")


def test_sealing_after_a_deletion_never_reuses_the_deleted_number(store):
    store.save("detector", model(), trusted_types=TRUSTED)
    deleted = store.save("detector", model(), trusted_types=TRUSTED)
    shutil.rmtree(deleted.path)
    fresh = store.save("detector", model(0.2), trusted_types=TRUSTED)
    assert fresh.version == 3
    loaded, info = store.load("detector", trusted_types=TRUSTED)
    assert info.version == 3
    assert info.current
    np.testing.assert_allclose(loaded.coef_, model(0.2).coef_)
    high = store.high_water("detector")
    assert high is not None
    assert high.version == 3


def test_an_older_version_loads_only_when_asked_for_by_number_and_is_marked_not_current(store):
    store.save("detector", model(1.0), trusted_types=TRUSTED)
    store.save("detector", model(0.1), trusted_types=TRUSTED)
    assert store.load("detector", trusted_types=TRUSTED)[1].version == 2
    older = store.load("detector", 1, trusted_types=TRUSTED)[1]
    assert (older.version, older.current) == (1, False)
    assert store.inspect("detector").current


def test_a_version_above_an_older_record_still_loads_after_its_signature_checks(store, tmp_path):
    # What a crash between writing v2 and raising the mark leaves behind (or an old record put
    # back on its own): v2 is above the mark, and its signature is what vouches for it.
    store.save("detector", model(1.0), trusted_types=TRUSTED)
    old_record = (store.root / "detector" / HIGH_WATER).read_bytes()
    store.save("detector", model(0.1), trusted_types=TRUSTED)
    (store.root / "detector" / HIGH_WATER).write_bytes(old_record)
    assert store.load("detector", trusted_types=TRUSTED)[1].version == 2


def test_a_missing_model_names_the_command_that_makes_it(store):
    for name, command in [
        ("diagnosis-logistic", "carevault model train"),
        ("diagnosis-forest", "carevault model train"),
        ("risk-ensemble", "carevault security train"),
        ("encryption-policy", "carevault security train-policy"),
    ]:
        with pytest.raises(SealedModelError, match=f"no sealed model '{name}'.*`{command}`") as e:
            store.load(name, trusted_types=TRUSTED)
        assert e.value.reason == "missing"


def test_the_record_survives_a_master_key_rotation(store, master):
    store.save("detector", model(), trusted_types=TRUSTED)
    master.rotate()
    report = rewrap_all(store.keys, master)
    assert report.complete
    assert report.rewrapped
    assert store.load("detector", trusted_types=TRUSTED)[1].version == 1
    assert store.save("detector", model(), trusted_types=TRUSTED).version == 2


def test_another_master_key_cannot_read_the_record(store, tmp_path):
    store.save("detector", model(), trusted_types=TRUSTED)
    with pytest.raises(SealedModelError, match="master key") as caught:
        ModelStore(store.root, MasterKey.generate()).high_water("detector")
    assert caught.value.reason == "wrong-key"


def test_deleting_the_keys_is_reported_as_tampering_not_as_a_model_never_trained(store):
    store.save("detector", model(), trusted_types=TRUSTED)
    for path in (store.root / "keys").glob("*.wrapped"):
        path.unlink()
    with pytest.raises(SealedModelError, match="key of model 'detector' is missing") as caught:
        store.load("detector", trusted_types=TRUSTED)
    assert caught.value.reason == "tampered"
