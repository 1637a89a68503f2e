"""The clinical data the diagnosis models learn from: the Wisconsin diagnostic breast-cancer
data set (569 cases, 30 features computed from digitised fine-needle aspirates), as shipped with
scikit-learn, so training needs no download and every machine trains the same model.

Labels are turned around from scikit-learn's encoding: here **1 means malignant**, the finding a
doctor is asked to catch, so "positive", recall and ROC-AUC read the clinical way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

DATASET = "wisconsin-diagnostic-breast-cancer"
# Held out for every figure the package reports; stratified so both classes keep their share.
TEST_FRACTION = 0.25
DEFAULT_SEED = 0

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Split:
    """A stratified train / test split of the data set (labels: 1 malignant, 0 benign)."""

    X_train: Array
    X_test: Array
    y_train: NDArray[np.int64]
    y_test: NDArray[np.int64]
    feature_names: tuple[str, ...]
    seed: int

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


def feature_names() -> tuple[str, ...]:
    return tuple(str(name) for name in load_breast_cancer().feature_names)


def load_split(seed: int = DEFAULT_SEED, test_fraction: float = TEST_FRACTION) -> Split:
    """The data set split with ``seed``; the same seed always gives the same split."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be between 0 and 1, got {test_fraction}")
    bunch: Any = load_breast_cancer()
    X = np.asarray(bunch.data, dtype=np.float64)
    y = (np.asarray(bunch.target) == 0).astype(np.int64)  # scikit-learn: 0 = malignant
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return Split(X_train, X_test, y_train, y_test, feature_names(), seed)
