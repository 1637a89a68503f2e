"""The four detectors keep the scikit-learn estimator contract, score anomalies higher than
normal rows, and their single-row fast paths agree with scikit-learn's batch results; the
calibration maps benign scores to a uniform scale and far-out attacks close to 1."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from carevault.security.calibration import BenignCalibrator
from carevault.security.detectors import (
    AutoencoderDetector,
    IsolationForestDetector,
    OneClassSVMDetector,
    RandomForestDetector,
)

FAST = {
    "iforest": lambda rs: IsolationForestDetector(n_estimators=30, random_state=rs),
    "ocsvm": lambda rs: OneClassSVMDetector(n_components=40, random_state=rs),
    "forest": lambda rs: RandomForestDetector(n_estimators=15, random_state=rs),
    "autoencoder": lambda rs: AutoencoderDetector(max_iter=15, random_state=rs),
}


def traffic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Benign rows (heavy-tailed counts and a few binary flags) and 5% attacks far out."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [rng.poisson(3.0, n), rng.exponential(2.0, n), rng.normal(0, 1, n), rng.random(n) < 0.05]
        + [rng.normal(0, 1, n) for _ in range(4)]
    ).astype(float)
    y = (rng.random(n) < 0.05).astype(int)
    X[y == 1, 0] += rng.poisson(40.0, int(y.sum()))
    X[y == 1, 1] += 25.0
    return X, y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return traffic(3000, 0)


def fitted(name: str, data: tuple[np.ndarray, np.ndarray], rs: int = 0):
    X, y = data
    detector = FAST[name](rs)
    return detector.fit(X, y) if detector.supervised else detector.fit(X[y == 0])


@pytest.mark.parametrize("name", FAST)
def test_fit_returns_the_estimator_and_params_round_trip_through_clone(name, data):
    detector = FAST[name](7)
    X, y = data
    assert (detector.fit(X, y) if detector.supervised else detector.fit(X[y == 0])) is detector
    params = detector.get_params()
    assert params["random_state"] == 7
    copy = clone(detector)
    assert copy.get_params() == params
    assert not any(k.endswith("_") for k in vars(copy))  # clone is unfitted


@pytest.mark.parametrize("name", FAST)
def test_the_same_random_state_gives_the_same_scores(name, data):
    X, _ = data
    first = fitted(name, data, rs=3).anomaly_score(X[:200])
    second = fitted(name, data, rs=3).anomaly_score(X[:200])
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", FAST)
def test_the_single_row_fast_path_equals_the_batch_path(name, data):
    X, _ = data
    detector = fitted(name, data)
    batch = detector.anomaly_score(X[:300])
    one = np.array([detector.anomaly_score_one(row) for row in X[:300]])
    np.testing.assert_allclose(one, batch, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", FAST)
def test_attacks_score_higher_than_benign_rows(name, data):
    X, y = traffic(1000, 1)
    scores = fitted(name, data).anomaly_score(X)
    assert np.median(scores[y == 1]) > np.quantile(scores[y == 0], 0.95)


@pytest.mark.parametrize("name", FAST)
def test_bad_input_is_refused_with_a_clear_error(name, data):
    detector = fitted(name, data)
    with pytest.raises(ValueError, match="features"):
        detector.anomaly_score(np.zeros((2, 3)))
    bad = data[0][:2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detector.anomaly_score(bad)


def test_the_isolation_forest_fast_path_is_scikit_learns_score(data):
    X, _ = data
    detector = fitted("iforest", data)
    expected = -detector.forest_.score_samples(X[:100])
    np.testing.assert_allclose([detector.anomaly_score_one(r) for r in X[:100]], expected)


def test_the_random_forest_needs_labelled_attacks(data):
    X, _ = data
    with pytest.raises(ValueError, match="attack"):
        RandomForestDetector(n_estimators=5).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="supervised"):
        RandomForestDetector(n_estimators=5).fit(X)


def test_fast_path_structures_are_not_stored_with_the_model(data):
    detector = fitted("forest", data)
    detector.anomaly_score_one(data[0][0])
    assert "_fast" in vars(detector)
    assert "_fast" not in detector.__getstate__()


# -- calibration ---------------------------------------------------------------------------------


def test_calibration_maps_benign_scores_to_a_uniform_scale():
    rng = np.random.default_rng(0)
    calibrator = BenignCalibrator().fit(rng.gamma(2.0, 1.0, 20_000))
    held_out = calibrator.transform(rng.gamma(2.0, 1.0, 20_000))
    deciles = np.quantile(held_out, np.linspace(0.1, 0.9, 9))
    np.testing.assert_allclose(deciles, np.linspace(0.1, 0.9, 9), atol=0.02)
    assert (held_out > 0.999).mean() < 0.003


def test_calibration_puts_attacks_beyond_every_benign_score_close_to_one():
    rng = np.random.default_rng(1)
    benign = rng.normal(0.0, 1.0, 5000)
    calibrator = BenignCalibrator().fit(benign)
    near, far = calibrator.transform(np.array([benign.max() + 0.5, benign.max() + 10.0]))
    assert 0.9998 < near < far
    assert far > 1 - 1e-9
    # Surprisal keeps ranking where the probability has rounded to 1.
    assert calibrator.surprisal(np.array([100.0]))[0] > calibrator.surprisal(np.array([20.0]))[0]


def test_ties_sit_in_the_middle_of_their_step():
    scores = np.array([0.0] * 900 + list(np.linspace(0.1, 1.0, 100)))
    calibrator = BenignCalibrator().fit(scores)
    assert calibrator.transform(np.array([0.0]))[0] == pytest.approx(0.45, abs=0.01)


def test_the_single_score_path_equals_the_batch_path():
    rng = np.random.default_rng(2)
    calibrator = BenignCalibrator().fit(rng.exponential(1.0, 3000))
    points = np.array([-1.0, 0.0, 0.5, 2.0, 7.0, 50.0, 1e6])
    np.testing.assert_allclose(
        [calibrator.surprisal_one(p) for p in points], calibrator.surprisal(points)
    )
