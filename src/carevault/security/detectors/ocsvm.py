"""One-Class SVM on an approximate RBF kernel: the boundary of benign traffic.

An exact kernel SVM is quadratic in the training set, out of reach for a million events, so the
kernel is approximated with Nystroem landmarks and the one-class SVM is linear (SGD) on them:
linear in the number of events to train, and one small matrix product to score. At scoring time
the Nystroem map and the SVM weights fold into one vector over the landmarks, so a row costs
``n_components`` kernel evaluations and a dot product.

The score is -log of the SVM's decision value f(x) = k(x, landmarks) . w: the same ranking, but
an RBF kernel decays like exp(-gamma d^2), so far from benign traffic f(x) underflows towards 0
for every outlier alike. In log space it becomes ~gamma d^2 to the nearest landmark instead, and
an attack ten times further out than any benign outlier still scores higher than it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import SGDOneClassSVM
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.utils import check_random_state

from ._base import Detector, Matrix, ScaledInput, Vector, as_matrix, sub_seed

_TINY = 1e-300  # f(x) at or below this (or negative: possible with negative weights) is "far"


class OneClassSVMDetector(ScaledInput, Detector):
    def __init__(
        self,
        n_components: int = 150,
        gamma: float | None = None,
        nu: float = 0.05,
        max_train_samples: int = 100_000,
        min_scale: float = 0.05,
        random_state: Any = None,
    ) -> None:
        self.n_components = n_components
        self.gamma = gamma
        self.nu = nu
        self.max_train_samples = max_train_samples
        self.min_scale = min_scale
        self.random_state = random_state

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> Self:
        matrix = as_matrix(X)
        rng = check_random_state(sub_seed(self.random_state))
        if matrix.shape[0] > self.max_train_samples:
            # The boundary of benign traffic is learnt as well from a sample as from all of it.
            pick = rng.choice(matrix.shape[0], self.max_train_samples, replace=False)
            matrix = matrix[np.sort(pick)]
        scaled = self._fit_scaler(matrix, self.min_scale)
        self.gamma_ = float(self.gamma) if self.gamma is not None else 1.0 / matrix.shape[1]
        self.nystroem_ = Nystroem(
            gamma=self.gamma_,
            n_components=min(self.n_components, scaled.shape[0]),
            random_state=rng.randint(2**31 - 1),
        ).fit(scaled)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.svm_ = SGDOneClassSVM(nu=self.nu, random_state=rng.randint(2**31 - 1)).fit(
                self.nystroem_.transform(scaled)
            )
        # score_samples(x) = phi(x) . coef = k(x, landmarks) . (normalization^T coef)
        self.landmarks_ = np.ascontiguousarray(self.nystroem_.components_, dtype=np.float64)
        self.weights_ = self.nystroem_.normalization_.T @ self.svm_.coef_
        self.n_features_in_ = matrix.shape[1]
        return self

    def _score(self, X: Matrix) -> Vector:
        kernel = rbf_kernel(self._scale(X), self.landmarks_, gamma=self.gamma_)
        scores: Vector = -np.log(np.maximum(kernel @ self.weights_, _TINY))
        return scores

    def _score_one(self, x: Vector) -> float:
        diff = self.landmarks_ - self._scale(x[None, :])
        kernel = np.exp(-self.gamma_ * np.einsum("ij,ij->i", diff, diff))
        return -math.log(max(float(kernel @ self.weights_), _TINY))
