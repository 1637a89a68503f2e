"""`carevault security train` seals an ensemble into the data directory; `evaluate` loads it,
scores traffic from another seed and reports per class and per detector; failures are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from carevault import cli
from carevault.security import clinic_day
from carevault.security.events import AttackClass
from carevault.security.scoring import MODEL_NAME, EnsembleRiskScorer, load_scorer

TINY = ["--days", "1", "--users", "30"]


def carevault(data_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir)}
    for name in ("CAREVAULT_MASTER_KEY", "CAREVAULT_MASTER_KEY_FILE", "CAREVAULT_ENV"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "carevault.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    data_dir = tmp_path_factory.mktemp("security-data")
    result = carevault(data_dir, "security", "train", "--seed", "5", *TINY, "--json")
    assert result.returncode == 0, result.stderr
    return data_dir, json.loads(result.stdout)


@pytest.fixture
def in_data_dir(trained, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_dir, _ = trained
    monkeypatch.setenv("CAREVAULT_DATA_DIR", str(data_dir))
    for name in ("CAREVAULT_MASTER_KEY", "CAREVAULT_MASTER_KEY_FILE", "CAREVAULT_ENV"):
        monkeypatch.delenv(name, raising=False)
    return data_dir


def test_train_seals_the_model_into_the_data_directory(trained):
    data_dir, report = trained
    assert report["version"] == 1
    assert Path(report["path"]).is_relative_to(data_dir / "models" / MODEL_NAME)
    assert {"manifest.json", "manifest.sig", "model.skops.enc"} <= {
        p.name for p in Path(report["path"]).iterdir()
    }
    assert (data_dir / "keys" / "master.json").exists()  # dev mode made its master key
    assert report["train_seed"] == 5
    assert report["validation_seed"] != 5
    assert report["train_attack_events"] > 0


def test_evaluate_reports_every_attack_class_per_detector_and_for_the_ensemble(trained):
    data_dir, _ = trained
    result = carevault(data_dir, "security", "evaluate", "--seed", "6", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["seed"] == 6
    assert report["days"] == 1.0
    assert report["users"] == 30
    scorers = report["scorers"]
    assert scorers[:5] == ["iforest", "ocsvm", "forest", "autoencoder", "ensemble"]
    assert {"fusion:max", "fusion:fisher"} <= set(scorers)
    assert set(report["per_class"]) == {a.value for a in AttackClass if a is not AttackClass.BENIGN}
    for entry in report["per_class"].values():
        for name in scorers:
            metrics = entry[name]
            assert {"roc_auc", "recall", "precision", "detection"} <= set(metrics)
            assert {"episodes", "detected", "attempts_median", "within_10_attempts"} <= set(
                metrics["detection"]
            )
    summary = report["summary"]["ensemble"]
    assert 0.0 <= summary["session_fpr"] <= 1.0
    assert summary["roc_auc"] > 0.95
    assert set(report["goals"]) == {
        "recorded clinic day: 0 sessions stepped up, blocked or suspended",
        "episode recall >= 99%",
        "roc_auc >= 0.99 for every attack class",
        "benign session FPR <= 0.1%",
        "brute force stopped within 10 attempts",
    }


def test_evaluate_reports_the_recorded_day_apart_from_the_simulator(trained, tmp_path):
    data_dir, _ = trained
    log = tmp_path / "day.jsonl"
    clinic_day.write(log, clinic_day.shipped()[:60])
    result = carevault(data_dir, "security", "evaluate", "--seed", "6", "--json", "--day", str(log))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    day = report["clinic_day"]
    assert day["log"] == str(log)
    assert day["events"] == 60
    assert {"stepped_up", "blocked", "suspended", "max_risk"} <= set(day)
    head = report["headline"]
    assert head["day_sessions"] == day["sessions"]
    assert 0.0 <= head["episode_recall"] <= 1.0
    assert head["episodes"] == report["summary"]["ensemble"]["episodes"]
    assert {"events_to_alert_median", "events_to_alert_worst", "benign_session_alert_rate"} <= set(
        head
    )


def test_evaluate_prints_a_table_for_people(in_data_dir, capsys):
    assert cli.main(["security", "evaluate", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "ROC-AUC per attack class" in out
    assert "brute_force" in out
    assert "goals:" in out
    assert "recorded clinic day" in out
    assert "attack episodes detected at the deployed threshold" in out


def test_evaluating_on_the_training_seed_is_refused_in_one_line(in_data_dir, capsys):
    assert cli.main(["security", "evaluate", "--seed", "5"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "another seed" in err


def test_evaluate_without_a_trained_model_says_how_to_train_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAREVAULT_DATA_DIR", str(tmp_path))
    assert cli.main(["security", "evaluate"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "carevault security train" in err


def test_a_tampered_model_is_refused_in_one_line(trained, tmp_path):
    data_dir, report = trained
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(data_dir, copy)
    payload = copy / Path(report["path"]).relative_to(data_dir) / "model.skops.enc"
    data = bytearray(payload.read_bytes())
    data[100] ^= 0x40
    payload.write_bytes(bytes(data))
    result = carevault(copy, "security", "evaluate", "--json")
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "signed digest" in result.stderr


def test_the_web_layer_loads_the_trained_scorer_from_the_data_directory(in_data_dir, tmp_path):
    scorer = load_scorer(in_data_dir)
    assert isinstance(scorer, EnsembleRiskScorer)
    info = scorer.describe()
    assert info["name"] == MODEL_NAME
    assert info["version"] == "1"
    assert info["trained_at"]
    assert load_scorer(tmp_path) is None  # nothing trained there


def test_bad_arguments_are_refused(in_data_dir, capsys):
    with pytest.raises(SystemExit):
        cli.main(["security", "train", "--days", "0"])
    assert "positive" in capsys.readouterr().err
