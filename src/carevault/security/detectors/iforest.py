"""Isolation Forest: anomalies are the rows a random tree isolates in few splits.

Fitted on benign traffic only: it then scores how unlike normal clinical use an event is, with
no knowledge of any attack, which is what catches the attack nobody labelled yet.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.ensemble import IsolationForest

from ._base import Detector, Matrix, Vector, as_matrix, sub_seed
from ._trees import PackedForest, pack_trees


def average_path_length(n: NDArray[np.float64]) -> NDArray[np.float64]:
    """c(n): the mean depth of an unsuccessful search in a binary search tree of n keys (Liu et
    al. 2008), i.e. the expected extra depth below a leaf that still holds n samples."""
    n = np.asarray(n, dtype=np.float64)
    safe = np.maximum(n, 2.0)
    c = 2.0 * (np.log(safe - 1.0) + np.euler_gamma) - 2.0 * (safe - 1.0) / safe
    return np.where(n <= 1, 0.0, np.where(n == 2, 1.0, c))


def _node_depths(tree: Any) -> NDArray[np.float64]:
    depths = np.zeros(tree.node_count, dtype=np.float64)
    for node in range(tree.node_count):  # children always have larger ids than their parent
        for child in (tree.children_left[node], tree.children_right[node]):
            if child != -1:
                depths[child] = depths[node] + 1
    return depths


class IsolationForestDetector(Detector):
    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int = 256,
        max_features: float = 1.0,
        random_state: Any = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.random_state = random_state

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> Self:
        matrix = as_matrix(X)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, matrix.shape[0]),
            max_features=self.max_features,
            random_state=sub_seed(self.random_state),
        ).fit(matrix)
        self.n_features_in_ = matrix.shape[1]
        return self

    def _score(self, X: Matrix) -> Vector:
        scores: Vector = -self.forest_.score_samples(X)
        return scores

    def _packed(self) -> tuple[PackedForest, float]:
        fast: tuple[PackedForest, float] | None = getattr(self, "_fast", None)
        if fast is None:
            trees = self.forest_.estimators_
            # h(x) = edges from the root to the leaf + c(samples left in the leaf).
            leaf_depths = [
                _node_depths(t.tree_)
                + average_path_length(t.tree_.n_node_samples.astype(np.float64))
                for t in trees
            ]
            denominator = len(trees) * float(
                average_path_length(np.array([float(self.forest_.max_samples_)]))[0]
            )
            fast = (pack_trees(trees, leaf_depths, self.forest_.estimators_features_), denominator)
            self._fast = fast
        return fast

    def _score_one(self, x: Vector) -> float:
        packed, denominator = self._packed()
        total = float(packed.leaf_values(x).sum())
        # -score_samples of scikit-learn: 2 ** (-E[h(x)] / c(max_samples)), in (0, 1].
        return float(2.0 ** (-total / denominator)) if denominator else 1.0
