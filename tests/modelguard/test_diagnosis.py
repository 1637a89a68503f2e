"""The diagnosis service: trained, measured and sealed models; strict input validation that names
the feature (never its value); explanations that add up; and a service that keeps serving the
last good model, with a security event, when a newer sealed version is refused."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler

from carevault.crypto import MasterKey
from carevault.modelguard import dataset, diagnosis_training, models, sealed
from carevault.modelguard.diagnosis import (
    DiagnosisService,
    DiagnosisUnavailable,
    InvalidFeatures,
    forest_contributions,
    logistic_contributions,
)
from carevault.modelguard.diagnosis_training import QualityBar, expected_calibration_error
from carevault.modelstore.store import HIGH_WATER, PAYLOAD, SIGNATURE, ModelStore, SealedModelError

SPLIT = dataset.load_split()
NAMES = dataset.feature_names()
LOGISTIC_NAME = sealed.MODEL_NAMES["logistic"]


@pytest.fixture(scope="module")
def master() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, master: MasterKey
) -> tuple[Path, list[diagnosis_training.ModelReport]]:
    """Both models trained and sealed once; tests work on copies of this directory."""
    root = tmp_path_factory.mktemp("trained") / "models"
    reports = diagnosis_training.train(ModelStore(root, master))
    return root, reports


@pytest.fixture
def store(trained, master, tmp_path) -> ModelStore:
    root = Path(shutil.copytree(trained[0], tmp_path / "models"))
    return ModelStore(root, master)


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, details: dict[str, Any]) -> None:
        self.seen.append((kind, details))


def service(store: ModelStore, events: Events | None = None, **options: Any) -> DiagnosisService:
    options.setdefault("check_seconds", 0.0)
    return DiagnosisService(store, on_security_event=events, **options)


def seal_logistic_again(store: ModelStore, c: float = 0.5) -> int:
    """A second, valid logistic version (sealed the way `carevault model train` seals)."""
    pipeline = models.make_pipeline("logistic")
    pipeline.set_params(model__C=c).fit(SPLIT.X_train, SPLIT.y_train)
    metadata = diagnosis_training._metadata(
        "logistic",
        SPLIT,
        diagnosis_training.measure(pipeline, SPLIT),
        diagnosis_training.DEFAULT_BAR,
        "trained",
    )
    info = store.save(
        LOGISTIC_NAME, pipeline, trusted_types=sealed.TRUSTED_TYPES, metadata=metadata
    )
    return info.version


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


# -- training and metrics ----------------------------------------------------------------------


def test_training_measures_both_models_on_held_out_cases_and_seals_them(trained, master):
    root, reports = trained
    assert [r.kind for r in reports] == ["logistic", "forest"]
    for report in reports:
        assert report.version == 1
        assert report.failures == []
        m = report.metrics
        assert m["test_cases"] == len(SPLIT.y_test)
        assert m["accuracy"] > 0.93
        assert m["roc_auc"] > 0.95
        assert 0 < m["brier"] < 0.08
        assert 0 < m["ece"] < 0.1
    info = ModelStore(root, master).inspect("diagnosis-forest")
    metadata = info.manifest["metadata"]
    assert metadata["feature_names"] == list(NAMES)
    assert len(metadata["feature_low"]) == len(metadata["feature_high"]) == 30
    assert metadata["metrics"]["roc_auc"] == format(reports[1].metrics["roc_auc"], ".6g")


def test_the_calibration_error_is_the_reliability_diagrams_weighted_gap():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=2000)
    y = (rng.uniform(size=2000) < p**2).astype(np.int64)  # overconfident on the malignant side
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    counts = np.bincount(np.minimum((p * 10).astype(int), 9), minlength=10)
    expected = float(np.sum(counts[counts > 0] * np.abs(observed - predicted)) / len(y))
    assert math.isclose(expected_calibration_error(y, p), expected, rel_tol=1e-9)
    assert expected_calibration_error(np.array([0, 1]), np.array([1.0, 0.0])) == 1.0
    with pytest.raises(ValueError, match="same length"):
        expected_calibration_error(np.array([0, 1]), np.array([0.5]))


def test_a_model_below_the_quality_bar_is_refused_for_sealing(tmp_path, master):
    store = ModelStore(tmp_path / "models", master)
    strict = QualityBar(min_accuracy=0.999, max_ece=0.001)
    reports = diagnosis_training.train(store, bar=strict)
    assert all(not r.sealed for r in reports)
    assert any("accuracy" in f for f in reports[0].failures)
    assert store.versions(LOGISTIC_NAME) == []
    assert "REFUSED: accuracy" in diagnosis_training.render(reports)


# -- diagnosing --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["logistic", "forest"])
def test_it_diagnoses_a_held_out_case_exactly_like_the_sealed_pipeline(store, kind):
    svc = service(store)
    pipeline = svc.model(kind).pipeline
    for row in SPLIT.X_test[:5]:
        result = svc.diagnose(list(row), model=kind)
        expected = pipeline.predict_proba(row.reshape(1, -1))[0, 1]
        assert result.probability == pytest.approx(expected, abs=1e-12)
        assert result.label == ("malignant" if expected >= 0.5 else "benign")
        assert (result.model, result.kind, result.version) == (f"diagnosis-{kind}", kind, 1)
        assert len(result.explanation.top) == 5
    as_dict = result.as_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict  # storable as it is


def test_the_logistic_explanation_adds_up_to_the_models_log_odds(store):
    model = service(store).model("logistic")
    for row in SPLIT.X_test[:20]:
        X = row.reshape(1, -1)
        baseline, contributions = logistic_contributions(model.pipeline, X)
        assert baseline + contributions.sum() == pytest.approx(
            model.pipeline.decision_function(X)[0], abs=1e-9
        )


def test_the_forest_explanation_adds_up_to_the_forests_probability(store):
    model = service(store).model("forest")
    for row in SPLIT.X_test[:20]:
        X = row.reshape(1, -1)
        baseline, contributions = forest_contributions(model.pipeline, X)
        assert baseline + contributions.sum() == pytest.approx(
            model.pipeline.predict_proba(X)[0, 1], abs=1e-9
        )


def test_the_explanation_lists_the_largest_contributions_first(store):
    svc = service(store)
    row = SPLIT.X_test[0]
    result = svc.diagnose(list(row), model="logistic", top=30)
    sizes = [abs(c.contribution) for c in result.explanation.top]
    assert sizes == sorted(sizes, reverse=True)
    assert {c.feature for c in result.explanation.top} == set(NAMES)
    assert result.explanation.unit == "log-odds"
    assert svc.diagnose(list(row), model="forest").explanation.unit == "probability"


def test_it_accepts_the_features_by_name(store):
    svc = service(store)
    row = SPLIT.X_test[1]
    by_name = svc.diagnose(dict(zip(NAMES, row.tolist(), strict=True)))
    assert by_name.probability == svc.diagnose(list(row)).probability


@pytest.mark.parametrize(
    ("change", "message", "feature"),
    [
        (lambda v: v[:29], "expected 30 features, got 29", None),
        (lambda v: [*v, 1.0], "expected 30 features, got 31", None),
        (lambda v: [*v[:3], float("nan"), *v[4:]], "'mean area' is not a finite number", 3),
        (lambda v: [*v[:2], float("inf"), *v[3:]], "'mean perimeter' is not a finite", 2),
        (lambda v: ["14.2", *v[1:]], "'mean radius' is not a number", 0),
        (lambda v: [True, *v[1:]], "'mean radius' is not a number", 0),
        (lambda v: [*v[:1], 12345.678, *v[2:]], "'mean texture' is outside its plausible", 1),
        (lambda v: [*v[:29], -0.5], "'worst fractal dimension' is outside", 29),
    ],
)
def test_bad_input_is_refused_naming_the_feature_but_never_its_value(
    store, change, message, feature
):
    svc = service(store)
    with pytest.raises(InvalidFeatures, match=message) as caught:
        svc.diagnose(change(list(SPLIT.X_test[0])))
    assert caught.value.feature == (None if feature is None else NAMES[feature])
    assert "12345" not in str(caught.value)


def test_bad_names_are_refused_by_name(store):
    svc = service(store)
    features = dict(zip(NAMES, SPLIT.X_test[0].tolist(), strict=True))
    del features["worst area"]
    with pytest.raises(InvalidFeatures, match="missing feature 'worst area'"):
        svc.diagnose(features)
    features["worst area"] = 500.0
    features["tumour colour"] = 1.0
    with pytest.raises(InvalidFeatures, match="unknown feature 'tumour colour'"):
        svc.diagnose(features)
    with pytest.raises(InvalidFeatures, match="got text"):
        svc.diagnose("1,2,3")  # type: ignore[arg-type]


def test_the_plausible_range_comes_from_training_data_with_a_margin(store):
    ranges = service(store).model("logistic").ranges
    low, high = SPLIT.X_train.min(axis=0), SPLIT.X_train.max(axis=0)
    assert np.all(ranges.low <= low)
    assert np.all(ranges.high >= high)
    assert np.all(ranges.low >= 0)
    # Every held-out case is plausible: the margin does not refuse real patients.
    svc = service(store, check_seconds=60.0)
    for row in SPLIT.X_test:
        svc.diagnose(list(row))  # raises if refused


def test_an_unknown_model_kind_is_named(store):
    with pytest.raises(ValueError, match="unknown model kind 'svm'"):
        service(store).diagnose(list(SPLIT.X_test[0]), model="svm")


# -- sealed models: last good model and security events -------------------------------------------


def test_a_newer_valid_version_is_picked_up_without_a_restart(store):
    svc = service(store)
    assert svc.diagnose(list(SPLIT.X_test[0])).version == 1
    assert seal_logistic_again(store) == 2
    assert svc.diagnose(list(SPLIT.X_test[0])).version == 2


def test_newer_versions_are_looked_for_only_when_the_check_interval_has_passed(store):
    now = [100.0]
    svc = service(store, check_seconds=60.0, clock=lambda: now[0])
    assert svc.diagnose(list(SPLIT.X_test[0])).version == 1
    seal_logistic_again(store)
    now[0] += 59.0
    assert svc.diagnose(list(SPLIT.X_test[0])).version == 1
    now[0] += 1.0
    assert svc.diagnose(list(SPLIT.X_test[0])).version == 2


def test_a_tampered_newer_version_is_refused_and_the_last_good_model_keeps_serving(store):
    events = Events()
    svc = service(store, events)
    assert svc.diagnose(list(SPLIT.X_test[0])).version == 1
    version = seal_logistic_again(store)
    flip_byte(store.root / LOGISTIC_NAME / f"v{version}" / PAYLOAD)
    for _ in range(3):
        assert svc.diagnose(list(SPLIT.X_test[0])).version == 1
    assert len(events.seen) == 1  # reported once, not on every diagnosis
    kind, details = events.seen[0]
    assert kind == "model_tampered"
    assert details["model"] == LOGISTIC_NAME
    assert (details["version"], details["serving_version"]) == (2, 1)
    assert "signed digest" in details["error"]
    status = {s["kind"]: s for s in svc.status()}
    assert status["logistic"]["serving_version"] == 1
    assert status["logistic"]["refused"]["reason"] == "tampered"
    assert status["forest"]["refused"] is None


def test_an_unsigned_newer_version_is_refused_with_its_own_event(store):
    events = Events()
    svc = service(store, events)
    svc.diagnose(list(SPLIT.X_test[0]))
    version = seal_logistic_again(store)
    (store.root / LOGISTIC_NAME / f"v{version}" / SIGNATURE).unlink()
    assert svc.diagnose(list(SPLIT.X_test[0])).version == 1
    assert [k for k, _ in events.seen] == ["model_unsigned"]


def test_deleting_the_served_newest_version_is_reported_as_a_rollback_and_changes_nothing(store):
    events = Events()
    svc = service(store, events)
    seal_logistic_again(store)
    assert svc.diagnose(list(SPLIT.X_test[0])).version == 2
    shutil.rmtree(store.root / LOGISTIC_NAME / "v2")
    assert svc.diagnose(list(SPLIT.X_test[0])).version == 2
    assert [k for k, _ in events.seen] == ["model_rollback"]
    assert "v2 is missing" in events.seen[0][1]["error"]


def test_a_directory_restored_from_an_older_copy_is_refused_by_the_running_service(store, tmp_path):
    # An old copy of the whole model directory, high-water record included, passes the store's
    # checks (the record is authentic, only old); the service remembers it served v2.
    old_copy = tmp_path / "old-copy"
    shutil.copytree(store.root / LOGISTIC_NAME, old_copy)
    events = Events()
    svc = service(store, events)
    seal_logistic_again(store)
    assert svc.diagnose(list(SPLIT.X_test[0])).version == 2
    shutil.rmtree(store.root / LOGISTIC_NAME)
    shutil.copytree(old_copy, store.root / LOGISTIC_NAME)
    assert store.load(LOGISTIC_NAME, trusted_types=sealed.TRUSTED_TYPES)[1].version == 1
    assert svc.diagnose(list(SPLIT.X_test[0])).version == 2
    assert [k for k, _ in events.seen] == ["model_rollback"]
    assert "v1 offered after v2 was served" in events.seen[0][1]["error"]


def test_a_service_with_no_good_model_refuses_to_diagnose_and_reports_it(store):
    flip_byte(store.root / LOGISTIC_NAME / HIGH_WATER)
    events = Events()
    with pytest.raises(DiagnosisUnavailable, match="high-water record does not open"):
        service(store, events).diagnose(list(SPLIT.X_test[0]))
    assert [k for k, _ in events.seen] == ["model_tampered"]
    assert events.seen[0][1]["serving_version"] is None
    # The other model is untouched and still serves.
    assert service(store, events).diagnose(list(SPLIT.X_test[0]), model="forest").version == 1


def test_with_nothing_trained_it_says_what_to_run_and_raises_no_alarm(tmp_path, master):
    events = Events()
    svc = service(ModelStore(tmp_path / "models", master), events)
    with pytest.raises(DiagnosisUnavailable, match="carevault model train"):
        svc.diagnose(list(SPLIT.X_test[0]))
    assert events.seen == []


def test_a_sealed_model_that_is_not_a_diagnosis_pipeline_is_refused(store):
    events = Events()
    wrong = Pipeline([("scale", MinMaxScaler()), ("model", LogisticRegression())])
    wrong.fit(SPLIT.X_train, SPLIT.y_train)
    store.save(LOGISTIC_NAME, wrong, trusted_types=["sklearn.preprocessing._data.MinMaxScaler"])
    with pytest.raises(DiagnosisUnavailable, match="not a StandardScaler"):
        service(store, events).diagnose(list(SPLIT.X_test[0]))
    assert [k for k, _ in events.seen] == ["model_refused"]
    with pytest.raises(SealedModelError) as caught:
        sealed.load(store, "logistic")
    assert caught.value.reason == "invalid"


def test_a_failing_event_sink_does_not_stop_diagnoses(store):
    def broken(kind: str, details: dict[str, Any]) -> None:
        raise RuntimeError("sink down")

    svc = DiagnosisService(store, on_security_event=broken, check_seconds=0.0)
    svc.diagnose(list(SPLIT.X_test[0]))
    version = seal_logistic_again(store)
    flip_byte(store.root / LOGISTIC_NAME / f"v{version}" / PAYLOAD)
    assert svc.diagnose(list(SPLIT.X_test[0])).version == 1


# -- importing a model trained elsewhere --------------------------------------------------------


def test_a_skops_file_trained_elsewhere_is_checked_and_sealed(store, tmp_path):
    pipeline = models.fit("logistic", SPLIT.X_train, SPLIT.y_train)
    path = tmp_path / "elsewhere.skops"
    sio.dump(pipeline, path)
    report = diagnosis_training.import_file(store, path)
    assert (report.kind, report.version, report.source) == ("logistic", 2, "imported")
    manifest = store.inspect(LOGISTIC_NAME).manifest
    assert manifest["metadata"]["source"] == "imported"
    assert len(manifest["metadata"]["source_sha256"]) == 64


def test_a_skops_file_that_would_run_code_is_never_loaded_or_sealed(store, tmp_path):
    evil = Pipeline([("scale", FunctionTransformer(os.system)), ("model", LogisticRegression())])
    path = tmp_path / "evil.skops"
    sio.dump(evil, path)
    with pytest.raises(ValueError, match=r"untrusted types \['posix.system'\]"):
        diagnosis_training.import_file(store, path)
    assert store.versions(LOGISTIC_NAME) == [1]


def test_an_imported_model_below_the_bar_or_of_the_wrong_shape_is_not_sealed(store, tmp_path):
    shuffled = np.random.default_rng(0).permutation(SPLIT.y_train)
    poor = models.fit("logistic", SPLIT.X_train, shuffled)
    sio.dump(poor, tmp_path / "poor.skops")
    report = diagnosis_training.import_file(store, tmp_path / "poor.skops")
    assert not report.sealed
    assert any("ROC-AUC" in f for f in report.failures)
    narrow = models.fit("logistic", SPLIT.X_train[:, :10], SPLIT.y_train)
    sio.dump(narrow, tmp_path / "narrow.skops")
    with pytest.raises(ValueError, match="30 Wisconsin features"):
        diagnosis_training.import_file(store, tmp_path / "narrow.skops")
    (tmp_path / "junk.skops").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a skops file"):
        diagnosis_training.import_file(store, tmp_path / "junk.skops")
    assert store.versions(LOGISTIC_NAME) == [1]
