"""Differentially private logistic regression (output perturbation, OpenDP Gaussian noise).

The calibration is checked from both ends: the sensitivity bound the noise is scaled to is
tested against real neighbouring data sets (one record replaced, including by a worst-case
record), and the scale OpenDP returns is tested to be exactly what its own accountant needs.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from carevault.modelguard import privacy
from carevault.modelguard.dataset import Split, load_split


@pytest.fixture(scope="module")
def split() -> Split:
    return load_split(0)


def _exact_weights(scaler: StandardScaler, X: np.ndarray, y: np.ndarray, C: float) -> np.ndarray:
    """The non-private minimiser, as fit_private_logistic computes it before adding noise."""
    F = privacy.unit_ball_features(scaler, X, privacy.DEFAULT_RADIUS)
    model = LogisticRegression(C=C, fit_intercept=False, tol=1e-10, max_iter=10_000)
    return np.asarray(model.fit(F, y).coef_).ravel()


def test_every_row_lands_in_the_unit_ball_even_an_extreme_one(split: Split) -> None:
    scaler = StandardScaler().fit(split.X_train)
    extreme = split.X_train[:3] * np.array([[1e6], [-1e6], [0.0]])
    F = privacy.unit_ball_features(
        scaler, np.vstack([split.X_test, extreme]), privacy.DEFAULT_RADIUS
    )
    assert F.shape == (len(split.X_test) + 3, split.n_features + 1)
    assert np.linalg.norm(F, axis=1).max() <= 1.0 + 1e-12
    # The bias feature is the same for every row (1/sqrt 2), so the intercept is learned.
    assert np.allclose(F[:, -1], 1 / math.sqrt(2))


@pytest.mark.parametrize("C", [0.1, 1.0])
def test_replacing_one_record_moves_the_exact_weights_by_at_most_2C(split: Split, C: float) -> None:
    """The sensitivity the noise is calibrated to (Chaudhuri et al. 2011, with lambda = 1/(C n)).

    Neighbours: one record replaced by a far outlier with the wrong label (the worst case for
    the loss gradient), by a copy of another record, or by a mislabelled copy.
    """
    scaler = StandardScaler().fit(split.X_train)  # fixed preprocessing, as the guarantee assumes
    X, y = split.X_train, split.y_train
    base = _exact_weights(scaler, X, y, C)
    moves = []
    for row in (0, 7, 100):
        for replacement, label in (
            (X[row] + 50 * X.std(axis=0), 1 - y[row]),
            (X[row + 1], y[row + 1]),
            (X[row + 1], 1 - y[row + 1]),
        ):
            X2, y2 = X.copy(), y.copy()
            X2[row], y2[row] = replacement, label
            moves.append(np.linalg.norm(_exact_weights(scaler, X2, y2, C) - base))
    assert privacy.l2_sensitivity(C) == 2 * C
    assert max(moves) <= privacy.l2_sensitivity(C)
    # The replacements do move the weights (at most 24% of the bound at C = 0.1, 14% at C = 1:
    # the bound is worst case).
    assert max(moves) > 0.01 * privacy.l2_sensitivity(C)


def test_the_noise_scale_shrinks_as_epsilon_grows() -> None:
    scales = [privacy.gaussian_scale(0.2, eps, 1e-5, 31) for eps in (0.25, 0.5, 1.0, 2.0, 8.0)]
    assert all(a > b for a, b in itertools.pairwise(scales))
    # Roughly inverse in epsilon at small epsilon (the Gaussian mechanism's sigma ~ sens / eps).
    assert 1.6 < scales[1] / scales[2] < 2.2


def test_the_noise_scale_is_the_smallest_one_opendp_certifies() -> None:
    sensitivity, delta, dim = 0.2, 1e-5, 31
    for eps in (0.5, 1.0, 4.0):
        scale = privacy.gaussian_scale(sensitivity, eps, delta, dim)
        assert privacy.certified_epsilon(sensitivity, scale, delta, dim) <= eps
        # Two per cent less noise would no longer be enough: the search is tight, not padded.
        assert privacy.certified_epsilon(sensitivity, 0.98 * scale, delta, dim) > eps
    # Below epsilon 1 the textbook bound sigma = sens * sqrt(2 ln(1.25/delta)) / eps holds;
    # OpenDP's zCDP accounting must be at least as tight as it.
    textbook = sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / 0.5
    assert privacy.gaussian_scale(sensitivity, 0.5, delta, dim) <= textbook


def _exact_delta(sensitivity: float, scale: float, epsilon: float) -> float:
    """The smallest delta for which Gaussian noise of this scale is (epsilon, delta)-DP at this
    L2 sensitivity (Balle & Wang 2018, theorem 8): independent of OpenDP's accounting."""
    a, b = sensitivity / (2 * scale), epsilon * scale / sensitivity
    return float(norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b))


@pytest.mark.parametrize("epsilon", [0.25, 1.0, 8.0])
def test_the_noise_meets_the_exact_gaussian_privacy_curve(epsilon: float) -> None:
    sensitivity, delta = privacy.l2_sensitivity(privacy.DEFAULT_C), privacy.DEFAULT_DELTA
    scale = privacy.gaussian_scale(sensitivity, epsilon, delta, 31)
    assert _exact_delta(sensitivity, scale, epsilon) <= delta
    # And it does not waste much: the exact curve allows at most ~10% less noise.
    assert _exact_delta(sensitivity, scale / 1.12, epsilon) > delta


def test_the_noise_is_calibrated_to_2C(split: Split) -> None:
    model = privacy.fit_private_logistic(split.X_train, split.y_train, 1.0, C=0.05)
    assert model.noise_scale == privacy.gaussian_scale(2 * 0.05, 1.0, privacy.DEFAULT_DELTA, 31)
    assert (model.epsilon, model.delta) == (1.0, privacy.DEFAULT_DELTA)


@pytest.mark.parametrize("epsilon", [0, 0.0, -1.0, float("nan"), -math.inf])
def test_it_refuses_an_epsilon_that_is_not_positive(split: Split, epsilon: float) -> None:
    with pytest.raises(ValueError, match="epsilon must be positive"):
        privacy.fit_private_logistic(split.X_train, split.y_train, epsilon)


def test_it_refuses_an_epsilon_that_is_not_a_number(split: Split) -> None:
    with pytest.raises(TypeError, match="epsilon must be a number"):
        privacy.fit_private_logistic(split.X_train, split.y_train, "1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="epsilon must be a number"):
        privacy.fit_private_logistic(split.X_train, split.y_train, True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delta": 0.0}, "delta must be between 0 and 1"),
        ({"delta": float("nan")}, "delta must be between 0 and 1"),
        ({"C": float("nan")}, "C must be a positive finite number"),
        ({"C": -1.0}, "C must be a positive finite number"),
        ({"radius": 0.0}, "radius must be a positive finite number"),
    ],
)
def test_it_refuses_bad_privacy_parameters(
    split: Split, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        privacy.fit_private_logistic(split.X_train, split.y_train, 1.0, **kwargs)  # type: ignore[arg-type]


def test_it_refuses_bad_training_data(split: Split) -> None:
    X = split.X_train.copy()
    X[3, 4] = np.nan
    with pytest.raises(ValueError, match="features must be finite"):
        privacy.fit_private_logistic(X, split.y_train, 1.0)
    with pytest.raises(ValueError, match="both classes"):
        privacy.fit_private_logistic(split.X_train, np.zeros_like(split.y_train), 1.0)
    with pytest.raises(ValueError, match="one label per row"):
        privacy.fit_private_logistic(split.X_train, split.y_train[:-1], 1.0)
    wrong = StandardScaler().fit(split.X_train[:, :5])
    with pytest.raises(ValueError, match="fitted on the same features"):
        privacy.fit_private_logistic(split.X_train, split.y_train, 1.0, scaler=wrong)


def test_without_epsilon_it_trains_the_exact_unperturbed_model(split: Split) -> None:
    model = privacy.fit_private_logistic(split.X_train, split.y_train, None)
    same = privacy.fit_private_logistic(split.X_train, split.y_train, math.inf)
    assert model.noise_scale == 0.0
    assert model.epsilon == math.inf
    np.testing.assert_array_equal(model.weights, same.weights)
    assert model.score(split.X_test, split.y_test) >= 0.9


def test_a_private_model_is_perturbed_and_every_run_draws_fresh_noise(split: Split) -> None:
    exact = privacy.fit_private_logistic(split.X_train, split.y_train, None).weights
    runs = [privacy.fit_private_logistic(split.X_train, split.y_train, 1.0) for _ in range(20)]
    noise = np.array([run.weights - exact for run in runs])
    assert not np.allclose(noise[0], noise[1])
    # The noise drawn has the calibrated spread (20 x 31 draws: the sample sd is within 15%).
    assert abs(noise.std() / runs[0].noise_scale - 1) < 0.15


def test_a_public_scaler_is_used_as_given(split: Split) -> None:
    public = StandardScaler().fit(split.X_test)  # stands in for reference data
    model = privacy.fit_private_logistic(split.X_train, split.y_train, 4.0, scaler=public)
    assert model.scaler is public


def test_with_a_generous_epsilon_accuracy_stays_near_the_non_private_model(split: Split) -> None:
    exact = privacy.fit_private_logistic(split.X_train, split.y_train, None)
    scores = [
        privacy.fit_private_logistic(split.X_train, split.y_train, 20.0).score(
            split.X_test, split.y_test
        )
        for _ in range(5)
    ]
    assert np.mean(scores) >= exact.score(split.X_test, split.y_test) - 0.05
    proba = exact.predict_proba(split.X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(exact.predict(split.X_test), (proba[:, 1] > 0.5).astype(int))
