"""Autoencoder: a small network that learns to reproduce benign feature vectors through a
narrow bottleneck. What it cannot reproduce is unlike the traffic it learnt from; the score is
the log of the mean squared reconstruction error of the standardised features (errors are
heavy-tailed: on a log scale the calibration's exponential tail becomes a power-law one).

scikit-learn's ``MLPRegressor`` trains it (no deep-learning framework needed for a few dozen
features); scoring one row is a hand-written forward pass over its weights.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor
from sklearn.utils import check_random_state

from ._base import Detector, Matrix, ScaledInput, Vector, as_matrix, sub_seed

_FLOOR = 1e-12  # log(0) guard: a perfect reconstruction


class AutoencoderDetector(ScaledInput, Detector):
    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] | None = None,
        max_iter: int = 40,
        batch_size: int = 512,
        alpha: float = 1e-4,
        max_train_samples: int = 100_000,
        min_scale: float = 0.05,
        random_state: Any = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.alpha = alpha
        self.max_train_samples = max_train_samples
        self.min_scale = min_scale
        self.random_state = random_state

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> Self:
        matrix = as_matrix(X)
        rng = check_random_state(sub_seed(self.random_state))
        if matrix.shape[0] > self.max_train_samples:
            pick = rng.choice(matrix.shape[0], self.max_train_samples, replace=False)
            matrix = matrix[np.sort(pick)]
        scaled = self._fit_scaler(matrix, self.min_scale)
        d = matrix.shape[1]
        # Default shape: half, a quarter (the bottleneck), half of the input width.
        self.hidden_sizes_ = tuple(
            self.hidden_layer_sizes or (max(8, d // 2), max(3, d // 4), max(8, d // 2))
        )
        self.network_ = MLPRegressor(
            hidden_layer_sizes=self.hidden_sizes_,
            activation="relu",
            alpha=self.alpha,
            batch_size=min(self.batch_size, scaled.shape[0]),
            max_iter=self.max_iter,
            random_state=rng.randint(2**31 - 1),
        )
        with warnings.catch_warnings():
            # A bounded number of epochs is the point (training budget); not converging fully
            # only makes the detector a little less sharp, and calibration absorbs its scale.
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.network_.fit(scaled, scaled)
        self.n_features_in_ = d
        return self

    def reconstruction_errors(self, X: ArrayLike) -> Matrix:
        """Squared error of each standardised feature (what the network failed to reproduce)."""
        scaled = self._scale(as_matrix(X))
        errors: Matrix = (scaled - self.network_.predict(scaled)) ** 2
        return errors

    def _score(self, X: Matrix) -> Vector:
        scaled = self._scale(X)
        errors = ((scaled - self.network_.predict(scaled)) ** 2).mean(axis=1)
        scores: Vector = np.log(errors + _FLOOR)
        return scores

    def _score_one(self, x: Vector) -> float:
        scaled = self._scale(x[None, :])[0]
        hidden = scaled
        coefs, intercepts = self.network_.coefs_, self.network_.intercepts_
        last = len(coefs) - 1
        for i, (weights, bias) in enumerate(zip(coefs, intercepts, strict=True)):
            hidden = hidden @ weights + bias
            if i != last:
                hidden = np.maximum(hidden, 0.0)
        return math.log(float(((scaled - hidden) ** 2).mean()) + _FLOOR)
