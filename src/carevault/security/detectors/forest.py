"""Random Forest: the supervised detector, trained on labelled attack traffic (from the traffic
generator, later from confirmed incidents). Sharpest on attacks like those it learnt, blind to
new ones; the unsupervised detectors beside it cover those.

Binary (attack vs benign) with balanced class weights: attacks are a small share of traffic and
must not be outvoted. The score is the log-odds of the forest's attack probability: a
probability crowds everything confident into the last hundredth below 1, where a benign event
the forest is unsure about (0.99) and an attack every tree agrees on (1.0) are nearly equal;
log-odds keep them apart for the calibration's tail.
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils import check_random_state

from ._base import Detector, Matrix, Vector, as_matrix, sub_seed
from ._trees import PackedForest, pack_trees

_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps]: log-odds within +-13.8


def _log_odds(p: Vector) -> Vector:
    clipped = np.clip(p, _EPS, 1.0 - _EPS)
    result: Vector = np.log(clipped / (1.0 - clipped))
    return result


def attack_mask(y: ArrayLike) -> NDArray[np.bool_]:
    """True for attack rows: labels are 0/1 (or class codes, 0 = benign) or class names."""
    labels = np.asarray(y)
    if labels.dtype.kind in "OUS":
        return np.asarray(labels.astype(str) != "benign")
    return np.asarray(labels != 0)


class RandomForestDetector(Detector):
    supervised = True

    def __init__(
        self,
        n_estimators: int = 60,
        max_depth: int | None = 12,
        min_samples_leaf: int = 10,
        max_features: float | str = 0.5,
        max_train_samples: int = 300_000,
        class_weight: str | None = "balanced",
        n_jobs: int | None = None,
        random_state: Any = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_train_samples = max_train_samples
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> Self:
        if y is None:
            raise ValueError("the random forest is supervised: fit it with labels")
        matrix = as_matrix(X)
        attack = attack_mask(y)
        if attack.shape[0] != matrix.shape[0]:
            raise ValueError("X and y have different numbers of rows")
        if attack.all() or not attack.any():
            raise ValueError("the random forest needs both benign and labelled attack rows")
        rng = check_random_state(sub_seed(self.random_state))
        if matrix.shape[0] > self.max_train_samples:
            # Keep every attack row (up to half the budget) and sample benign rows for the rest:
            # the rare class is where the information is.
            attacks = np.flatnonzero(attack)
            benign = np.flatnonzero(~attack)
            half = self.max_train_samples // 2
            if attacks.size > half:
                attacks = rng.choice(attacks, half, replace=False)
            take = min(benign.size, self.max_train_samples - attacks.size)
            rows = np.sort(np.concatenate([attacks, rng.choice(benign, take, replace=False)]))
            matrix, attack = matrix[rows], attack[rows]
        self.forest_ = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            class_weight=self.class_weight,
            n_jobs=self.n_jobs,
            random_state=rng.randint(2**31 - 1),
        ).fit(matrix, attack.astype(np.int64))
        # Training may use every core; scoring runs on the request's thread.
        self.forest_.n_jobs = None
        self.n_features_in_ = matrix.shape[1]
        return self

    def _score(self, X: Matrix) -> Vector:
        return _log_odds(self.forest_.predict_proba(X)[:, 1])

    def _packed(self) -> PackedForest:
        fast: PackedForest | None = getattr(self, "_fast", None)
        if fast is None:
            trees = self.forest_.estimators_
            leaf_values = []
            for t in trees:
                counts = t.tree_.value[:, 0, :]
                totals = counts.sum(axis=1)
                leaf_values.append(counts[:, 1] / np.where(totals > 0, totals, 1.0))
            fast = pack_trees(trees, leaf_values)
            self._fast = fast
        return fast

    def _score_one(self, x: Vector) -> float:
        p = min(max(float(self._packed().leaf_values(x).mean()), _EPS), 1.0 - _EPS)
        return math.log(p / (1.0 - p))
