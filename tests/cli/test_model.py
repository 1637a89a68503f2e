"""`carevault model train|seal|verify` on real temporary data directories: metrics, sealing,
verification, and one-line errors with a non-zero exit for tampering and rollback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from carevault import cli
from carevault.modelguard import dataset, models

LOGISTIC = "diagnosis-logistic"
FOREST = "diagnosis-forest"


def _isolate(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    monkeypatch.setenv("CAREVAULT_DATA_DIR", str(directory))
    for name in ("CAREVAULT_MASTER_KEY", "CAREVAULT_MASTER_KEY_FILE", "CAREVAULT_ENV"):
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`carevault model train --json` run once; tests get copies of its data directory."""
    directory = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _isolate(monkeypatch, directory)
        code = cli.main(["model", "train", "--json"])
    assert code == 0
    return directory


@pytest.fixture
def data_dir(trained_dir, tmp_path, monkeypatch) -> Path:
    directory = Path(shutil.copytree(trained_dir, tmp_path / "data"))
    _isolate(monkeypatch, directory)
    return directory


@pytest.fixture
def empty_dir(tmp_path, monkeypatch) -> Path:
    _isolate(monkeypatch, tmp_path)
    return tmp_path


def test_train_prints_held_out_metrics_and_seals_both_models(empty_dir, capsys):
    code, out, err = run(capsys, "model", "train", "--seed", "2", "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["seed"] == 2
    assert [m["model"] for m in data["models"]] == [LOGISTIC, FOREST]
    for entry in data["models"]:
        assert entry["passed"]
        assert entry["sealed_version"] == 1
        assert set(entry["metrics"]) == {"accuracy", "roc_auc", "brier", "ece", "test_cases"}
        assert entry["metrics"]["roc_auc"] >= data["quality_bar"]["min_roc_auc"]
    assert (empty_dir / "models" / LOGISTIC / "v1" / "model.skops.enc").exists()
    code, out, _ = run(capsys, "model", "train", "--seed", "2")
    assert code == 0
    assert "ROC-AUC" in out
    assert "sealed v2" in out


def test_verify_passes_on_freshly_sealed_models(data_dir, capsys):
    code, out, err = run(capsys, "model", "verify", "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["ok"]
    assert [(m["model"], m["current_version"]) for m in report["models"]] == [
        (LOGISTIC, 1),
        (FOREST, 1),
    ]
    code, out, _ = run(capsys, "model", "verify")
    assert code == 0
    assert f"{LOGISTIC}: serving v1 (v1 ok)" in out


def test_verify_fails_in_one_line_when_a_byte_of_a_sealed_model_is_flipped(data_dir, capsys):
    payload = data_dir / "models" / FOREST / "v1" / "model.skops.enc"
    data = bytearray(payload.read_bytes())
    data[1000] ^= 0x01
    payload.write_bytes(bytes(data))
    code, out, err = run(capsys, "model", "verify", "--json")
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("carevault: error: model 'diagnosis-forest' v1")
    assert "does not match its signed digest" in err
    report = json.loads(out)
    assert not report["ok"]
    assert [m["ok"] for m in report["models"]] == [True, False]
    assert report["models"][1]["reason"] == "tampered"


def test_deleting_the_newest_version_is_refused_as_a_rollback(data_dir, capsys):
    code, _, _ = run(capsys, "model", "train")
    assert code == 0
    shutil.rmtree(data_dir / "models" / LOGISTIC / "v2")
    code, out, err = run(capsys, "model", "verify")
    assert code == 1
    assert err.count("\n") == 1
    assert "model 'diagnosis-logistic': its newest sealed version v2 is missing" in err
    assert "rolled back" in err
    assert f"{LOGISTIC}: FAILED" in out
    assert f"{FOREST}: serving v2" in out


def test_seal_imports_a_checked_skops_file_as_the_next_version(data_dir, tmp_path, capsys):
    split = dataset.load_split()
    path = tmp_path / "trained-elsewhere.skops"
    sio.dump(models.fit("forest", split.X_train, split.y_train), path)
    code, out, err = run(capsys, "model", "seal", str(path), "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert (report["model"], report["sealed_version"], report["source"]) == (FOREST, 2, "imported")
    assert run(capsys, "model", "verify")[0] == 0


def test_seal_refuses_a_file_with_untrusted_types_in_one_line(data_dir, tmp_path, capsys):
    evil = Pipeline([("scale", FunctionTransformer(os.system)), ("model", LogisticRegression())])
    path = tmp_path / "evil.skops"
    sio.dump(evil, path)
    code, out, err = run(capsys, "model", "seal", str(path))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "untrusted types ['posix.system']" in err
    assert sorted(p.name for p in (data_dir / "models" / LOGISTIC).glob("v*")) == ["v1"]


def test_seal_of_a_missing_file_fails_in_one_line(data_dir, capsys):
    code, _, err = run(capsys, "model", "seal", str(data_dir / "absent.skops"))
    assert code == 1
    assert err.count("\n") == 1
    assert "No such file" in err


def test_verify_with_nothing_sealed_says_what_to_run_and_creates_no_key(empty_dir, capsys):
    code, out, err = run(capsys, "model", "verify")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "run `carevault model train`" in err
    assert not (empty_dir / "keys").exists()


@pytest.mark.parametrize("action", ["train", "seal", "verify"])
def test_every_model_command_has_help(action, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["model", action, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "--json" in out
    assert f"usage: carevault model {action}" in out


def test_multiparty_scores_held_out_cases_among_three_parties_like_the_plaintext_model(
    data_dir, capsys
):
    code, out, _ = run(capsys, "model", "multiparty", "--cases", "4", "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["model"], report["version"]) == ("diagnosis-logistic", 1)
    assert report["agree"] == report["cases"] == 4


def test_multiparty_without_a_sealed_model_says_what_to_run(empty_dir, capsys):
    code, _, err = run(capsys, "model", "multiparty")
    assert code != 0
    assert "model train" in err
