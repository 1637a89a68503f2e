"""What every detector shares: the scikit-learn estimator contract, one orientation of scores
(higher = more anomalous), a batch path and a fast single-row path."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

Matrix = NDArray[np.float64]
Vector = NDArray[np.float64]

# Standardised values beyond this are clipped: a failure count 10^6 sigmas out is no more
# anomalous than one at 10^3, and unbounded inputs would overflow the kernel and the network.
_CLIP = 1e3


def as_matrix(X: ArrayLike) -> Matrix:
    """``X`` as a finite 2-D float64 array (a clear error otherwise)."""
    array = np.asarray(X, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D feature matrix, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("feature matrix holds NaN or infinite values")
    return np.ascontiguousarray(array)


def as_row(x: ArrayLike) -> Vector:
    row = np.asarray(x, dtype=np.float64)
    if row.ndim != 1:
        row = row.reshape(-1)
    return row


def signed_log1p(X: NDArray[np.float64]) -> NDArray[np.float64]:
    """Counts, byte sizes and rates are heavy-tailed: compare them on a log scale."""
    result: NDArray[np.float64] = np.sign(X) * np.log1p(np.abs(X))
    return result


class Detector(BaseEstimator):  # type: ignore[misc]
    """Base of the four detectors. Subclasses implement ``fit``, ``_score`` (batch) and
    ``_score_one`` (one row, no scikit-learn call on the way)."""

    # Supervised detectors learn from labels (attack = non-zero); the others from benign rows.
    supervised: ClassVar[bool] = False

    def anomaly_score(self, X: ArrayLike) -> Vector:
        """Raw anomaly score of each row: higher means more anomalous (scale is per detector;
        :class:`~carevault.security.calibration.BenignCalibrator` maps it to [0, 1])."""
        check_is_fitted(self)
        matrix = as_matrix(X)
        if matrix.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{type(self).__name__} was fitted on {self.n_features_in_} features, "
                f"got {matrix.shape[1]}"
            )
        return self._score(matrix)

    def anomaly_score_one(self, x: ArrayLike) -> float:
        """The same as ``anomaly_score([x])[0]``, in microseconds instead of milliseconds."""
        return self._score_one(as_row(x))

    def _score(self, X: Matrix) -> Vector:
        raise NotImplementedError

    def _score_one(self, x: Vector) -> float:
        raise NotImplementedError

    # The fast-path structures are derived from the fitted model: rebuilt after loading, never
    # stored, so a sealed model holds only what scikit-learn itself fitted.
    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = dict(super().__getstate__())
        state.pop("_fast", None)
        return state


class ScaledInput:
    """Mixin: signed log then standardisation with a floor on the spread, for detectors that
    measure distances (a feature constant in benign traffic must not get a zero scale)."""

    center_: Vector
    scale_: Vector

    def _fit_scaler(self, X: Matrix, min_scale: float) -> Matrix:
        logged = signed_log1p(X)
        self.center_ = logged.mean(axis=0)
        self.scale_ = np.maximum(logged.std(axis=0), min_scale)
        return self._scale(X)

    def _scale(self, X: Matrix) -> Matrix:
        scaled: Matrix = np.clip((signed_log1p(X) - self.center_) / self.scale_, -_CLIP, _CLIP)
        return scaled


def sub_seed(random_state: Any) -> int | None:
    """An int seed for sub-estimators, so a fitted detector is reproducible from its params."""
    if random_state is None or isinstance(random_state, int | np.integer):
        return None if random_state is None else int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))
