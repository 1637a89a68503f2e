"""The models' high-water marks are anchored outside the model directory: an older
``high-water.enc`` put back together with the older model is refused, by a fresh process too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from carevault.crypto import MasterKey
from carevault.modelstore.anchor import CHECKPOINTS, Anchor
from carevault.modelstore.store import ModelStore, RollbackError

RNG = np.random.default_rng(1)
X = RNG.normal(size=(60, 3))
Y = (X[:, 0] > 0).astype(int)
NAME = "diagnosis-logistic"


def model(c: float) -> LogisticRegression:
    return LogisticRegression(C=c).fit(X, Y)


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


def _store(data_dir: Path, master: MasterKey) -> ModelStore:
    return ModelStore(data_dir / "models", master, anchor=Anchor(data_dir, master, external=None))


def _replay_v1(data_dir: Path, snapshot: Path) -> None:
    """Put the model directory back as it was after v1: the older record and the older files."""
    shutil.rmtree(data_dir / "models" / NAME)
    shutil.copytree(snapshot, data_dir / "models" / NAME)


def test_each_sealing_appends_its_mark_to_the_signed_checkpoints(tmp_path, master):
    store = _store(tmp_path, master)
    store.save(NAME, model(1.0), trusted_types=[])
    store.save(NAME, model(0.1), trusted_types=[])
    floor = store.anchor.model_floor(NAME)
    assert floor["version"] == 2
    assert floor["manifest_sha256"] == store.high_water(NAME).manifest_sha256
    assert (tmp_path / CHECKPOINTS).stat().st_mode & 0o777 == 0o600


def test_an_older_record_replayed_with_the_older_model_is_refused(tmp_path, master):
    store = _store(tmp_path, master)
    store.save(NAME, model(1.0), trusted_types=[])
    snapshot = tmp_path / "snapshot"
    shutil.copytree(tmp_path / "models" / NAME, snapshot)
    store.save(NAME, model(0.1), trusted_types=[])
    _replay_v1(tmp_path, snapshot)
    with pytest.raises(RollbackError, match=r"record says v1 but the signed checkpoint .* v2"):
        _store(tmp_path, master).load(NAME, trusted_types=[])


def test_a_replay_with_the_checkpoint_file_deleted_is_refused(tmp_path, master):
    store = _store(tmp_path, master)
    store.save(NAME, model(1.0), trusted_types=[])
    snapshot = tmp_path / "snapshot"
    shutil.copytree(tmp_path / "models" / NAME, snapshot)
    store.save(NAME, model(0.1), trusted_types=[])
    _replay_v1(tmp_path, snapshot)
    (tmp_path / CHECKPOINTS).unlink()
    with pytest.raises(RollbackError, match="missing or empty although checkpoints were written"):
        _store(tmp_path, master).load(NAME, trusted_types=[])


def test_sealing_after_a_replay_never_reuses_an_anchored_number(tmp_path, master):
    store = _store(tmp_path, master)
    store.save(NAME, model(1.0), trusted_types=[])
    snapshot = tmp_path / "snapshot"
    shutil.copytree(tmp_path / "models" / NAME, snapshot)
    store.save(NAME, model(0.1), trusted_types=[])
    _replay_v1(tmp_path, snapshot)
    assert store.save(NAME, model(0.5), trusted_types=[]).version == 3


def test_a_store_without_an_anchor_keeps_the_record_only_behaviour(tmp_path, master):
    store = ModelStore(tmp_path / "models", master)
    store.save(NAME, model(1.0), trusted_types=[])
    assert not (tmp_path / CHECKPOINTS).exists()


_LOAD = textwrap.dedent(
    """
    import sys
    from carevault.modelstore.datadir import model_store
    from carevault.modelstore.store import SealedModelError
    try:
        _, info = model_store(sys.argv[1]).load("diagnosis-logistic", trusted_types=[])
    except SealedModelError as exc:
        print("refused:", exc)
        sys.exit(3)
    print("loaded", info.version)
    """
)


def _fresh_load(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir), "CAREVAULT_ENV": "development"}
    env.pop("CAREVAULT_MASTER_KEY", None)
    env.pop("CAREVAULT_MASTER_KEY_FILE", None)
    return subprocess.run(
        [sys.executable, "-c", _LOAD, str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_fresh_process_refuses_the_replayed_mark_and_model(tmp_path, monkeypatch):
    from carevault.modelstore.datadir import model_store

    monkeypatch.setenv("CAREVAULT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CAREVAULT_MASTER_KEY", raising=False)
    monkeypatch.delenv("CAREVAULT_MASTER_KEY_FILE", raising=False)
    monkeypatch.delenv("CAREVAULT_AUDIT_ANCHOR_FILE", raising=False)
    store = model_store(tmp_path)
    store.save(NAME, model(1.0), trusted_types=[])
    snapshot = tmp_path / "snapshot"
    shutil.copytree(tmp_path / "models" / NAME, snapshot)
    store.save(NAME, model(0.1), trusted_types=[])
    assert _fresh_load(tmp_path).stdout.strip() == "loaded 2"
    _replay_v1(tmp_path, snapshot)
    result = _fresh_load(tmp_path)
    assert result.returncode == 3, result.stderr
    assert "record says v1 but the signed checkpoint" in result.stdout


def test_a_replay_that_also_edits_the_anchored_mark_is_refused(tmp_path, master):
    store = _store(tmp_path, master)
    store.save(NAME, model(1.0), trusted_types=[])
    snapshot = tmp_path / "snapshot"
    shutil.copytree(tmp_path / "models" / NAME, snapshot)
    store.save(NAME, model(0.1), trusted_types=[])
    _replay_v1(tmp_path, snapshot)
    path = tmp_path / CHECKPOINTS
    path.write_text(path.read_text().replace('"version": 2', '"version": 1'))
    with pytest.raises(RollbackError, match=r"line 2: the signature does not verify \(forged\)"):
        _store(tmp_path, master).load(NAME, trusted_types=[])


def test_the_external_copy_keeps_the_floor_when_the_local_file_is_rewound(tmp_path, master):
    external = tmp_path / "external.jsonl"
    store = ModelStore(
        tmp_path / "models", master, anchor=Anchor(tmp_path, master, external=external)
    )
    store.save(NAME, model(1.0), trusted_types=[])
    snapshot, local_then = tmp_path / "snapshot", (tmp_path / CHECKPOINTS).read_text()
    shutil.copytree(tmp_path / "models" / NAME, snapshot)
    store.save(NAME, model(0.1), trusted_types=[])
    _replay_v1(tmp_path, snapshot)
    (tmp_path / CHECKPOINTS).write_text(local_then)  # the data directory rewound as a whole
    with pytest.raises(RollbackError, match=r"record says v1 but the signed checkpoint .* v2"):
        store.load(NAME, trusted_types=[])
