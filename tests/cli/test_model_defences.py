"""`carevault model train --private / --extra-data` on real temporary data directories: the
private logistic model sealed with its privacy parameters and served everywhere, refusals in one
line, and retraining rows read strictly and screened for poison."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from carevault import cli
from carevault.modelguard import dataset, models, poisoning, private_model
from carevault.modelguard.diagnosis import DiagnosisService

LOGISTIC = "diagnosis-logistic"
FOREST = "diagnosis-forest"
NAMES = dataset.feature_names()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "data"
    monkeypatch.setenv("CAREVAULT_DATA_DIR", str(directory))
    for name in ("CAREVAULT_MASTER_KEY", "CAREVAULT_MASTER_KEY_FILE", "CAREVAULT_ENV"):
        monkeypatch.delenv(name, raising=False)
    return directory


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _csv(path: Path, X: np.ndarray, y: np.ndarray) -> Path:  # noqa: N803 (sklearn's names)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*NAMES, "label"])
        for x, label in zip(X, y, strict=True):
            writer.writerow([repr(float(v)) for v in x] + [str(int(label))])
    return path


def _poisoned(tmp_path: Path) -> tuple[Path, poisoning.PoisonedBatch]:
    """Jittered copies of the training split (new-looking cases) with 20% label flips."""
    batch = poisoning.inject(*_new_cases(11), "label_flip", 0.2, random_state=4)
    return _csv(tmp_path / "poisoned.csv", batch.X, batch.y), batch


def _new_cases(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training split with 2% multiplicative jitter: cases like the trusted ones, not
    copies (the data set has no cases outside the split to use)."""
    split = dataset.load_split(0)
    rng = np.random.default_rng(seed)
    jitter = 1.0 + rng.normal(0.0, 0.02, size=split.X_train.shape)
    return split.X_train * jitter, split.y_train


# -- --private -----------------------------------------------------------------------------------


def test_private_training_seals_the_logistic_model_with_its_privacy_parameters(data_dir, capsys):
    # Epsilon 64: little noise, so the model clears the bar on every draw (200 of 200 at 16).
    code, out, err = run(capsys, "model", "train", "--private", "64", "--delta", "1e-6", "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["private"] == {"epsilon": 64.0, "delta": 1e-6}
    logistic, forest = data["models"]
    assert (logistic["model"], logistic["sealed_version"]) == (LOGISTIC, 1)
    privacy = logistic["privacy"]
    assert (privacy["epsilon"], privacy["delta"], privacy["C"]) == (64.0, 1e-6, 0.1)
    assert privacy["noise_scale"] > 0
    assert forest["privacy"] is None  # the forest has no private variant, and says so

    code, out, err = run(capsys, "model", "verify", "--json")
    assert (code, err) == (0, "")
    served = json.loads(out)["models"][0]
    assert (served["privacy"]["epsilon"], served["privacy"]["delta"]) == ("64", "1e-06")
    assert "scaler" in served["privacy"]["does_not_cover"]
    code, out, _ = run(capsys, "model", "verify")
    assert code == 0
    assert "differentially private: epsilon 64, delta 1e-06, C 0.1, radius 2" in out
    assert f"{FOREST}: serving v1 (v1 ok)\n  not differentially private" in out


def test_the_sealed_private_model_is_the_one_the_service_and_homomorphic_form_use(data_dir, capsys):
    assert run(capsys, "model", "train", "--private", "64")[0] == 0
    service = DiagnosisService.for_data_dir(data_dir)
    serving = service.model("logistic")
    assert serving.info.manifest["metadata"]["privacy"]["epsilon"] == "64"
    split = dataset.load_split(0)
    result = service.diagnose(list(split.X_test[0]))
    assert result.probability == pytest.approx(
        float(serving.pipeline.predict_proba(split.X_test[:1])[0, 1])
    )
    top = result.explanation.top
    assert len(top) == 5
    assert all(item.feature in NAMES for item in top)
    form = models.linear_form(serving.pipeline)
    np.testing.assert_allclose(
        form.decision(split.X_test), serving.pipeline.decision_function(split.X_test), atol=1e-9
    )
    # It is the private fit, not the plain one: C and weights differ from the usual pipeline.
    assert serving.pipeline.named_steps["model"].C == private_model.SERVED_C


def test_a_too_small_epsilon_is_refused_in_one_line_naming_the_missed_metric(data_dir, capsys):
    # At epsilon 0.05 the noise swamps the weights: 197 of 200 draws miss the bar. Three tries
    # make a false failure of this test a ~3e-6 event.
    for _ in range(3):
        code, out, err = run(capsys, "model", "train", "--private", "0.05")
        if code == 1:
            break
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith(f"carevault: error: {LOGISTIC} not sealed: ")
    assert any(m in err for m in ("accuracy", "ROC-AUC", "Brier", "ECE"))
    assert "differentially private at epsilon 0.05" in err
    assert "REFUSED" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--delta", "1e-5"], "--delta needs --private EPSILON"),
        (["--private", "1", "--delta", "1.5"], "--delta must be between 0 and 1"),
        (["--no-screen"], "--no-screen needs --extra-data FILE"),
    ],
)
def test_inconsistent_options_are_refused_in_one_line_before_training(
    data_dir, capsys, argv, message
):
    code, out, err = run(capsys, "model", "train", *argv)
    assert (code, out) == (1, "")
    assert err.startswith(f"carevault: error: {message}")
    assert err.count("\n") == 1
    assert not data_dir.exists()


@pytest.mark.parametrize("epsilon", ["0", "-1", "nan", "inf", "one"])
def test_a_non_positive_or_non_numeric_epsilon_is_a_usage_error(data_dir, capsys, epsilon):
    with pytest.raises(SystemExit) as caught:
        cli.main(["model", "train", "--private", epsilon])
    assert caught.value.code == 2
    assert "--private" in capsys.readouterr().err


# -- --extra-data --------------------------------------------------------------------------------


def test_poisoned_extra_rows_are_mostly_dropped_and_counted_per_check_never_printed(
    data_dir, tmp_path, capsys
):
    path, batch = _poisoned(tmp_path)
    code, out, err = run(capsys, "model", "train", "--extra-data", str(path), "--json")
    assert (code, err) == (0, "")
    summary = json.loads(out)["extra_data"]
    assert summary["rows"] == len(batch.y)
    flips = int(batch.is_poison.sum())
    assert summary["dropped"] >= 0.8 * flips  # most of the poison
    assert summary["dropped"] <= flips + 0.1 * (len(batch.y) - flips)  # and little else
    assert summary["kept"] + summary["dropped"] == summary["rows"]
    assert set(summary["dropped_by_check"]) == set(poisoning.CHECKS)
    code, out, err = run(capsys, "model", "train", "--extra-data", str(path))
    assert code == 0
    assert f"extra data poisoned.csv: {len(batch.y)} rows" in out
    assert "rows each screen check fired on" in out
    for value in batch.X[:20].ravel():
        assert repr(float(value)) not in out + err
    code, out, _ = run(capsys, "model", "verify")
    assert code == 0
    assert "extra rows from poisoned.csv (screened)" in out


def test_a_clean_extra_file_keeps_most_rows_and_is_trained_on(data_dir, tmp_path, capsys):
    path = _csv(tmp_path / "clean.csv", *_new_cases(12))
    code, out, err = run(capsys, "model", "train", "--extra-data", str(path), "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    rows = data["extra_data"]["rows"]
    assert data["extra_data"]["kept"] >= 0.9 * rows
    training = data["models"][0]["training_data"]
    assert training["rows"] == training["split_rows"] + data["extra_data"]["kept"]


def test_no_screen_keeps_every_row_warns_and_the_quality_bar_still_stops_the_poison(
    data_dir, tmp_path, capsys
):
    path, batch = _poisoned(tmp_path)
    code, out, err = run(capsys, "model", "train", "--extra-data", str(path), "--no-screen")
    assert f"{len(batch.y)} rows, {len(batch.y)} added to training, 0 dropped" in out
    assert "WARNING: --no-screen: the extra rows were not screened for poison" in out
    # Unscreened, 20% flipped labels leave both models miscalibrated: refused, not sealed.
    assert code == 1
    assert err.startswith(f"carevault: error: {LOGISTIC} not sealed: ECE")
    assert not list((data_dir / "models" / LOGISTIC).glob("v*"))
    clean = _csv(tmp_path / "clean.csv", *_new_cases(13))
    assert run(capsys, "model", "train", "--extra-data", str(clean), "--no-screen")[0] == 0
    code, out, _ = run(capsys, "model", "verify")
    assert code == 0
    assert "extra rows from clean.csv (NOT screened: --no-screen)" in out


def test_a_bad_extra_file_fails_in_one_line_with_its_line_number_and_seals_nothing(
    data_dir, tmp_path, capsys
):
    split = dataset.load_split(0)
    labels = split.y_train[:5].copy()
    labels[3] = 7
    path = _csv(tmp_path / "bad.csv", split.X_train[:5], labels)
    code, out, err = run(capsys, "model", "train", "--extra-data", str(path))
    assert (code, out) == (1, "")
    assert err == (
        "carevault: error: line 5, column 'label': must be 0 (benign) or 1 (malignant)\n"
    )
    assert not (data_dir / "models").exists()
    code, _, err = run(capsys, "model", "train", "--extra-data", str(tmp_path / "absent.csv"))
    assert code == 1
    assert "No such file" in err
    assert not (data_dir / "models").exists()
