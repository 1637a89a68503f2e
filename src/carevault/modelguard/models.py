"""The two diagnosis models: a logistic regression and a tree ensemble, each a scikit-learn
pipeline whose scaler is fitted on training data only (fitting it on all data would leak the
test set's spread into the model).

The logistic model is the one served homomorphically and among parties: its score is a dot
product plus a bias, which CKKS and secret sharing evaluate exactly; :func:`linear_form` folds
the scaler into the weights so those back ends see one affine function of the raw features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

LOGISTIC = "logistic"
FOREST = "forest"
KINDS = (LOGISTIC, FOREST)


def make_pipeline(kind: str, random_state: int = 0) -> Pipeline:
    """An unfitted diagnosis pipeline of the given kind."""
    if kind == LOGISTIC:
        # C=1 with L2: regularised enough that the weights stay small, which keeps the CKKS and
        # fixed-point (MPyC) evaluations far from their numeric limits.
        model: object = LogisticRegression(C=1.0, max_iter=2000, random_state=random_state)
    elif kind == FOREST:
        model = RandomForestClassifier(
            n_estimators=200, min_samples_leaf=2, n_jobs=1, random_state=random_state
        )
    else:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")
    return Pipeline([("scale", StandardScaler()), ("model", model)])


def fit(kind: str, X: NDArray[np.float64], y: NDArray[np.int64], random_state: int = 0) -> Pipeline:
    pipeline = make_pipeline(kind, random_state)
    pipeline.fit(X, y)
    return pipeline


@dataclass(frozen=True)
class LinearForm:
    """``score(x) = weights · x + bias`` on raw (unscaled) features; P(malignant) = sigmoid."""

    weights: NDArray[np.float64]
    bias: float

    def decision(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(X, dtype=np.float64) @ self.weights + self.bias


def linear_form(pipeline: Pipeline) -> LinearForm:
    """The fitted logistic pipeline as one affine function of the raw features.

    With z = (x - mean) / scale, w·z + b = (w / scale)·x + (b - w·mean / scale).
    """
    scaler = pipeline.named_steps["scale"]
    model = pipeline.named_steps["model"]
    if not isinstance(model, LogisticRegression) or not isinstance(scaler, StandardScaler):
        raise TypeError("only a fitted StandardScaler + LogisticRegression pipeline is linear")
    w = np.asarray(model.coef_, dtype=np.float64).ravel()
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    mean = np.asarray(scaler.mean_, dtype=np.float64)
    weights = w / scale
    bias = float(model.intercept_[0] - np.dot(weights, mean))
    return LinearForm(weights, bias)
