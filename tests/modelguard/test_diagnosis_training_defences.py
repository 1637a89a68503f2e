"""The training-time defences wired into training: the private logistic model as a servable
pipeline (exactly the released weights, usable by every back end), strict reading of extra
training rows, and the poison screen on them."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from carevault.crypto import MasterKey
from carevault.modelguard import (
    dataset,
    diagnosis,
    diagnosis_training,
    extra_data,
    poisoning,
    privacy,
    private_model,
)
from carevault.modelguard import homomorphic as he
from carevault.modelguard.homomorphic_client import HomomorphicClient
from carevault.modelguard.models import linear_form
from carevault.modelguard.sealed import TRUSTED_TYPES, check_pipeline
from carevault.modelstore.store import ModelStore

NAMES = dataset.feature_names()


@pytest.fixture(scope="module")
def split() -> dataset.Split:
    return dataset.load_split(0)


@pytest.fixture(scope="module")
def released(split: dataset.Split) -> privacy.DPLogisticModel:
    """A private fit at epsilon 4 (fresh noise each run: the tests hold for any draw)."""
    return privacy.fit_private_logistic(split.X_train, split.y_train, 4.0, C=private_model.SERVED_C)


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _csv_of(path: Path, X: np.ndarray, y: np.ndarray) -> Path:
    rows = [[repr(float(v)) for v in x] + [str(int(label))] for x, label in zip(X, y, strict=True)]
    return _write(path, [*NAMES, "label"], rows)


# -- the private model as a pipeline -------------------------------------------------------------


def test_the_private_pipeline_computes_exactly_the_released_weights_log_odds(split, released):
    pipeline = private_model.as_pipeline(released)
    X = np.vstack([split.X_train, split.X_test])
    z = released.scaler.transform(X)
    w = released.weights
    expected = (z / released.radius @ w[:-1] + w[-1]) / math.sqrt(2.0)
    np.testing.assert_allclose(pipeline.decision_function(X), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        pipeline.predict_proba(X)[:, 1], 1.0 / (1.0 + np.exp(-expected)), rtol=1e-12
    )


def test_inside_the_clipping_radius_it_equals_the_dp_models_own_predictions(split, released):
    pipeline = private_model.as_pipeline(released)
    # Test cases pulled towards the mean until their standardised norm is below the radius,
    # where the training-time clipping does nothing.
    mean = released.scaler.mean_
    z_norm = np.linalg.norm(released.scaler.transform(split.X_test), axis=1, keepdims=True)
    inside = mean + (split.X_test - mean) * (0.9 * released.radius / z_norm)
    np.testing.assert_allclose(
        pipeline.predict_proba(inside), released.predict_proba(inside), rtol=1e-12, atol=1e-15
    )
    # Outside it they differ: the served form is unclipped, as documented, not a copy.
    assert not np.allclose(
        pipeline.predict_proba(split.X_test), released.predict_proba(split.X_test)
    )


def test_the_private_pipeline_is_a_sealable_diagnosis_pipeline_for_every_back_end(split, released):
    pipeline = private_model.as_pipeline(released)
    assert check_pipeline(pipeline) == "logistic"
    loaded = sio.loads(sio.dumps(pipeline), trusted=list(TRUSTED_TYPES))
    np.testing.assert_array_equal(
        loaded.predict_proba(split.X_test), pipeline.predict_proba(split.X_test)
    )
    form = linear_form(loaded)
    np.testing.assert_allclose(
        form.decision(split.X_test), pipeline.decision_function(split.X_test), atol=1e-9
    )
    baseline, contributions = diagnosis.logistic_contributions(loaded, split.X_test[:1])
    assert baseline + contributions.sum() == pytest.approx(
        float(pipeline.decision_function(split.X_test[:1])[0]), abs=1e-9
    )
    client = HomomorphicClient(len(NAMES))
    logits = client.decrypt_logits(
        he.score_request(client.encrypt_columns(split.X_test), form), len(split.X_test)
    )
    assert np.array_equal(logits > 0, pipeline.predict(split.X_test) == 1)


def test_fit_returns_the_privacy_parameters_for_the_signed_metadata(split):
    pipeline, details = private_model.fit(split.X_train, split.y_train, 2.0, delta=1e-6)
    assert check_pipeline(pipeline) == "logistic"
    assert (details["epsilon"], details["delta"]) == (2.0, 1e-6)
    assert (details["C"], details["radius"]) == (private_model.SERVED_C, privacy.DEFAULT_RADIUS)
    assert details["l2_sensitivity"] == 2 * private_model.SERVED_C
    assert details["noise_scale"] == privacy.gaussian_scale(
        2 * private_model.SERVED_C, 2.0, 1e-6, len(NAMES) + 1
    )
    assert "scaler" in details["does_not_cover"]
    assert "not private" in details["does_not_cover"]


def test_fit_refuses_to_call_a_noise_free_model_private(split):
    with pytest.raises(ValueError, match="finite epsilon"):
        private_model.fit(split.X_train, split.y_train, math.inf)


# -- reading extra rows --------------------------------------------------------------------------


def test_a_valid_file_is_read_in_the_data_sets_feature_order_whatever_its_column_order(
    split, tmp_path
):
    header = ["label", *reversed(NAMES)]
    rows = [
        [str(int(label)), *(repr(float(v)) for v in reversed(x))]
        for x, label in zip(split.X_test[:5], split.y_test[:5], strict=True)
    ]
    rows.append([])  # a blank line at the end is allowed
    extra = extra_data.read_csv(_write(tmp_path / "new.csv", header, rows))
    np.testing.assert_array_equal(extra.X, split.X_test[:5])
    np.testing.assert_array_equal(extra.y, split.y_test[:5])
    assert extra.source == "new.csv"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, r: (h[:-2] + h[-1:], [x[:-2] + x[-1:] for x in r]), "missing column"),
        (lambda h, r: ([*h, "age"], [[*x, "50"] for x in r]), "unknown column(s) ['age']"),
        (lambda h, r: ([*h, "label"], [[*x, "1"] for x in r]), "repeated column(s) ['label']"),
        (lambda h, r: (h, [r[0], r[1], ["12.5x", *r[2][1:]]]), "line 4, column 'mean radius'"),
        (lambda h, r: (h, [r[0], ["nan", *r[1][1:]]]), "line 3, column 'mean radius': not a f"),
        (lambda h, r: (h, [r[0], [*r[1][:-1], "inf"], r[2]]), "line 3, column 'label'"),
        (lambda h, r: (h, [r[0], r[1], [*r[2][:-1], "2"]]), "line 4, column 'label': must be 0"),
        (lambda h, r: (h, [r[0], r[1][:-1]]), "line 3: 30 fields, the header has 31"),
        (lambda h, r: (h, []), "a header but no data rows"),
    ],
)
def test_a_bad_file_is_refused_saying_where_and_never_what_the_cell_held(
    split, tmp_path, change, message
):
    header = [*NAMES, "label"]
    rows = [[repr(float(v)) for v in x] + ["0"] for x in split.X_train[:3]]
    header, rows = change(header, rows)
    with pytest.raises(extra_data.ExtraDataError) as caught:
        extra_data.read_csv(_write(tmp_path / "bad.csv", header, rows))
    assert message in str(caught.value)
    for value in (repr(float(v)) for v in split.X_train[:3].ravel()):
        assert value not in str(caught.value)
    assert "12.5x" not in str(caught.value)


def test_an_empty_or_non_text_file_is_refused(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(extra_data.ExtraDataError, match="empty"):
        extra_data.read_csv(empty)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 10)
    with pytest.raises(extra_data.ExtraDataError, match="not UTF-8"):
        extra_data.read_csv(binary)


# -- screening and training on them --------------------------------------------------------------


def test_the_screen_drops_most_injected_label_flips_and_says_which_checks_fired(split, tmp_path):
    half = len(split.y_train) // 2
    trusted = (split.X_train[:half], split.y_train[:half])
    batch = poisoning.inject(
        split.X_train[half:], split.y_train[half:], "label_flip", 0.2, random_state=3
    )
    extra = extra_data.read_csv(_csv_of(tmp_path / "poisoned.csv", batch.X, batch.y))
    summary = extra_data.screen(extra, trusted)
    dropped = ~summary.kept
    recall = (dropped & batch.is_poison).sum() / batch.is_poison.sum()
    assert recall >= 0.8
    assert summary.dropped == int(dropped.sum())
    assert sum(summary.by_check.values()) >= summary.dropped
    assert set(summary.by_check) == set(poisoning.CHECKS)
    assert summary.as_dict()["screened"] is True


def test_a_clean_file_keeps_most_rows_and_no_screen_keeps_all(split, tmp_path):
    half = len(split.y_train) // 2
    trusted = (split.X_train[:half], split.y_train[:half])
    X, y = split.X_train[half:], split.y_train[half:]
    extra = extra_data.read_csv(_csv_of(tmp_path / "clean.csv", X, y))
    summary = extra_data.screen(extra, trusted)
    assert summary.kept_count >= 0.9 * len(y)
    unscreened = extra_data.screen(extra, trusted, enabled=False)
    assert (unscreened.kept_count, unscreened.screened, unscreened.by_check) == (len(y), False, {})


def test_training_adds_the_kept_rows_and_records_them_but_not_in_the_feature_ranges(
    split, tmp_path
):
    # Two rows far outside the training data's spread but labelled plausibly: kept by
    # --no-screen; the sealed plausible ranges still come from the training split alone.
    X = split.X_test[:2] * 1.0
    X[:, 0] = split.X_train[:, 0].max() * 3
    extra = extra_data.read_csv(_csv_of(tmp_path / "wide.csv", X, split.y_test[:2]))
    summary = extra_data.screen(extra, (split.X_train, split.y_train), enabled=False)
    store = ModelStore(tmp_path / "models", MasterKey.generate())
    reports = diagnosis_training.train(store, seed=0, extra=summary)
    for report in reports:
        assert report.sealed
        training = report.extra["training_data"]
        assert (training["split_rows"], training["rows"]) == (len(split.y_train), 428)
        assert training["extra_data"]["kept"] == 2
        metadata = store.inspect(report.name).manifest["metadata"]
        high = float(metadata["feature_high"][0])
        assert high < split.X_train[:, 0].max() * 3
    assert "WARNING: --no-screen" in diagnosis_training.render(reports)


def test_a_byte_order_mark_from_a_spreadsheet_is_accepted(split, tmp_path):
    path = _csv_of(tmp_path / "excel.csv", split.X_test[:2], split.y_test[:2])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    np.testing.assert_array_equal(extra_data.read_csv(path).X, split.X_test[:2])
