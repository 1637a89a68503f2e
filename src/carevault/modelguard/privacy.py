"""Differentially private training of the logistic diagnosis model.

OpenDP 0.16 has no linear-model trainer, so this is *output perturbation* of L2-regularised
logistic regression (Chaudhuri, Monteleoni & Sarwate, "Differentially private empirical risk
minimization", JMLR 2011, algorithm 1), with the noise drawn by OpenDP's Gaussian mechanism:

* every row is mapped into the unit ball: standardised, divided by ``radius``, clipped to norm 1,
  then joined by a constant bias feature and scaled by 1/sqrt(2) (so the bias is regularised too
  and ||x|| <= 1 holds for every row, clipped or not);
* the exact minimiser of (1/n) sum log-loss + (lambda/2) ||w||^2 has L2 sensitivity
  2 / (n * lambda) when one record is replaced (the log-loss is 1-Lipschitz for ||x|| <= 1 and
  the objective is lambda-strongly convex); scikit-learn minimises C * sum loss + ||w||^2 / 2,
  i.e. lambda = 1 / (C n), so the sensitivity is 2C whatever n is (adding or removing a record
  moves the minimiser by at most C, so 2C covers that neighbouring relation too);
* OpenDP's ``make_gaussian`` adds the noise; its zCDP guarantee is converted to (epsilon, delta)
  with ``make_zCDP_to_approxDP`` + ``make_fix_delta`` and the smallest noise scale OpenDP
  certifies for the requested (epsilon, delta) is found by ``binary_search_param``.

Limits, stated rather than hidden: by default the standardisation's means and spreads are
fitted on the training data and treated as public (as diffprivlib asks its caller for data
bounds), so the guarantee covers the weights *given* that preprocessing, not the means and
spreads themselves; pass ``scaler=`` fitted on public or reference data for an end-to-end
guarantee. The guarantee also assumes the solver reaches the exact minimiser (it is run to a
tight tolerance). ``epsilon=None`` or ``inf`` trains the same model without noise. OpenDP draws
the noise from the operating system's CSPRNG, so private runs cannot be seeded and differ by
design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import opendp.prelude as dp
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

dp.enable_features("contrib")

DEFAULT_DELTA = 1e-5
# Regularisation: smaller C means less sensitivity (2C) but a more biased model. C and radius were
# chosen once among C in {0.03, 0.05, 0.1, 0.3, 1, 3} and radius in {2, 3, 6} on splits 0-4 of
# this data set (docs/models-training.md): C = 0.05 kept the most accuracy at epsilon <= 2.
# Choosing them on private data is itself a leak the guarantee does not count; a deployment
# should fix them in advance, as here.
DEFAULT_C = 0.05
# Standardised rows have norm about sqrt(30) ~ 5.5; dividing by 2 and clipping to norm 1 keeps
# mostly each row's direction, which lost less accuracy under noise than radius 6 (which keeps
# the norms of all but the far tails).
DEFAULT_RADIUS = 2.0


def _check_epsilon(epsilon: float | None) -> float:
    if epsilon is None:
        return math.inf
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
        raise TypeError("epsilon must be a number or None")
    value = float(epsilon)
    if math.isnan(value) or value <= 0:
        raise ValueError(f"epsilon must be positive (or None / inf for no privacy), got {epsilon}")
    return value


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):  # also refuses NaN, which compares false
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def _check_delta(delta: float) -> float:
    value = float(delta)
    if not 0.0 < value < 1.0:  # NaN fails this too
        raise ValueError(f"delta must be between 0 and 1, got {delta}")
    return value


def l2_sensitivity(C: float) -> float:
    """How far (L2) the exact weights can move when one training record is replaced:
    2 / (n lambda) with lambda = 1 / (C n), for rows in the unit ball and a 1-Lipschitz loss
    (Chaudhuri et al. 2011)."""
    return 2.0 * _positive("C", C)


@lru_cache(maxsize=256)
def gaussian_scale(sensitivity: float, epsilon: float, delta: float, dim: int) -> float:
    """The smallest Gaussian noise scale OpenDP certifies as (epsilon, delta)-DP for a vector of
    ``dim`` values with this L2 sensitivity (cached: the binary search costs ~0.1 s)."""
    sensitivity = _positive("sensitivity", sensitivity)
    epsilon = _check_epsilon(epsilon)
    if not math.isfinite(epsilon):
        raise ValueError("a finite epsilon is needed to calibrate noise")
    delta = _check_delta(delta)
    if dim < 1:
        raise ValueError(f"dim must be at least 1, got {dim}")
    space = (dp.vector_domain(dp.atom_domain(T=float, nan=False), dim), dp.l2_distance(T=float))

    def chain(scale: float) -> dp.Measurement:
        gaussian = dp.m.make_gaussian(*space, scale=scale)
        return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(gaussian), delta)

    return float(dp.binary_search_param(chain, d_in=sensitivity, d_out=(epsilon, delta)))


def certified_epsilon(sensitivity: float, scale: float, delta: float, dim: int) -> float:
    """The epsilon OpenDP certifies for Gaussian noise of ``scale`` at this sensitivity and
    delta: the check that the scale :func:`gaussian_scale` returned is enough."""
    space = (dp.vector_domain(dp.atom_domain(T=float, nan=False), dim), dp.l2_distance(T=float))
    gaussian = dp.m.make_gaussian(*space, scale=scale)
    chain = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(gaussian), delta)
    # OpenDP's Python API is untyped; map returns the (epsilon, delta) pair for d_in.
    return float(chain.map(sensitivity)[0])  # type: ignore[no-untyped-call]


@dataclass
class DPLogisticModel:
    """A fitted (possibly private) logistic model over the unit-ball features."""

    weights: NDArray[np.float64]
    scaler: StandardScaler
    radius: float
    epsilon: float
    delta: float
    noise_scale: float

    def features(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return unit_ball_features(self.scaler, X, self.radius)

    def decision_function(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.features(X) @ self.weights

    def predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        p = 1.0 / (1.0 + np.exp(-np.clip(self.decision_function(X), -500, 500)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: NDArray[np.float64]) -> NDArray[np.int64]:
        return (self.decision_function(X) > 0).astype(np.int64)

    def score(self, X: NDArray[np.float64], y: NDArray[np.int64]) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))


def unit_ball_features(
    scaler: StandardScaler, X: NDArray[np.float64], radius: float
) -> NDArray[np.float64]:
    Z = np.asarray(scaler.transform(np.asarray(X, dtype=np.float64)), dtype=np.float64) / radius
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    Z = Z / np.maximum(1.0, norms)
    return np.hstack([Z, np.ones((len(Z), 1))]) / math.sqrt(2.0)


def fit_private_logistic(
    X: NDArray[np.float64],
    y: NDArray[np.int64],
    epsilon: float | None,
    delta: float = DEFAULT_DELTA,
    C: float = DEFAULT_C,
    radius: float = DEFAULT_RADIUS,
    scaler: StandardScaler | None = None,
) -> DPLogisticModel:
    """Train with (epsilon, delta)-DP; OpenDP draws the noise, so runs differ by design.

    ``scaler``: a StandardScaler already fitted on public data, for a guarantee that covers the
    preprocessing too; by default one is fitted on ``X`` (see the module's limits).
    """
    eps = _check_epsilon(epsilon)
    delta = _check_delta(delta)
    C = _positive("C", C)
    radius = _positive("radius", radius)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if X.ndim != 2 or len(X) != len(y) or len(X) == 0:
        raise ValueError("X must be a non-empty 2-D array with one label per row")
    if not np.all(np.isfinite(X)):
        raise ValueError("features must be finite")
    if set(np.unique(y).tolist()) != {0, 1}:
        raise ValueError("labels must contain both classes 0 and 1")
    if scaler is None:
        scaler = StandardScaler().fit(X)
    elif getattr(scaler, "n_features_in_", None) != X.shape[1]:
        raise ValueError("scaler must be a StandardScaler fitted on the same features")
    F = unit_ball_features(scaler, X, radius)
    # Output perturbation needs the exact minimiser; a tight tolerance gets close to it.
    model = LogisticRegression(C=C, fit_intercept=False, tol=1e-10, max_iter=10_000)
    model.fit(F, y)
    weights = np.asarray(model.coef_, dtype=np.float64).ravel()
    scale = 0.0
    if math.isfinite(eps):
        scale = gaussian_scale(l2_sensitivity(C), eps, delta, F.shape[1])
        space = (
            dp.vector_domain(dp.atom_domain(T=float, nan=False), F.shape[1]),
            dp.l2_distance(T=float),
        )
        release = dp.m.make_gaussian(*space, scale=scale)
        weights = np.asarray(release(weights.tolist()), dtype=np.float64)
    return DPLogisticModel(weights, scaler, radius, eps, delta, scale)
