"""The diagnosis models as sealed in the model store: their names, the types skops may load,
the signed metadata that travels with them, and the checks a loaded model must pass.

The store (:mod:`carevault.modelstore.store`) does the cryptography (skops with a trusted-type
list, AES-256-GCM bound to name and version, an Ed25519-signed manifest, a high-water record
against rollback). This module adds what only the diagnosis service knows: that a sealed
diagnosis model is a ``StandardScaler`` + logistic regression or random forest pipeline over the
30 Wisconsin features, and the plausible range of each feature, which is kept in the signed
manifest so that an attacker cannot widen it without breaking the signature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from carevault.modelstore.store import ModelStore, SealedInfo, SealedModelError

from . import dataset
from .models import FOREST, KINDS, LOGISTIC

MODEL_NAMES: dict[str, str] = {LOGISTIC: "diagnosis-logistic", FOREST: "diagnosis-forest"}

# Everything a sealed diagnosis pipeline is made of. skops trusts scikit-learn's estimators by
# default; they are listed anyway so the list says what a diagnosis model may contain. The
# tree structure (Tree) is the one type skops does not trust on its own.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
)

# How far outside the training data a value may lie, as a share of the training span on each
# side. Wide enough for real patients beyond the 569 cases (the largest tumours are rare), tight
# enough to catch a unit mistake (mm instead of cm multiplies a radius by ten) or a typo.
RANGE_MARGIN = 0.5

_ESTIMATORS: dict[str, type] = {LOGISTIC: LogisticRegression, FOREST: RandomForestClassifier}


@dataclass(frozen=True)
class FeatureRanges:
    """The plausible interval of each feature: the training data's range widened by
    :data:`RANGE_MARGIN` of its span on each side, never below zero (every Wisconsin feature is
    a size, a count or a ratio, so none is negative)."""

    names: tuple[str, ...]
    low: NDArray[np.float64]
    high: NDArray[np.float64]

    @classmethod
    def from_training(
        cls, X: NDArray[np.float64], names: Sequence[str], margin: float = RANGE_MARGIN
    ) -> FeatureRanges:
        lo = np.min(X, axis=0)
        hi = np.max(X, axis=0)
        span = hi - lo
        return cls(tuple(names), np.maximum(lo - margin * span, 0.0), hi + margin * span)

    def as_metadata(self) -> dict[str, list[float]]:
        return {"feature_low": self.low.tolist(), "feature_high": self.high.tolist()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], names: Sequence[str]) -> FeatureRanges:
        # The manifest keeps floats as short decimal text (they have no canonical form to sign).
        low = np.array([float(v) for v in metadata["feature_low"]], dtype=np.float64)
        high = np.array([float(v) for v in metadata["feature_high"]], dtype=np.float64)
        if low.shape != (len(names),) or high.shape != (len(names),) or np.any(low > high):
            raise ValueError("feature ranges do not match the features")
        return cls(tuple(names), low, high)


@dataclass(frozen=True)
class SealedDiagnosisModel:
    """A diagnosis pipeline that passed every check of the store and of this module."""

    kind: str
    pipeline: Pipeline
    info: SealedInfo
    ranges: FeatureRanges

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> int:
        return self.info.version

    @property
    def metrics(self) -> dict[str, float]:
        raw = self.info.manifest.get("metadata", {}).get("metrics", {})
        return {str(k): float(v) for k, v in raw.items()}


def check_pipeline(obj: object, kind: str | None = None) -> str:
    """The kind of a fitted diagnosis pipeline; ValueError saying what is wrong otherwise."""
    if not isinstance(obj, Pipeline) or [name for name, _ in obj.steps] != ["scale", "model"]:
        raise ValueError("not a diagnosis pipeline (expected the steps 'scale' and 'model')")
    if not isinstance(obj.named_steps["scale"], StandardScaler):
        raise ValueError("the pipeline's 'scale' step is not a StandardScaler")
    estimator = obj.named_steps["model"]
    found = next((k for k, cls in _ESTIMATORS.items() if type(estimator) is cls), None)
    if found is None:
        raise ValueError(
            f"the pipeline's model is a {type(estimator).__name__}; expected a "
            "LogisticRegression or a RandomForestClassifier"
        )
    if kind is not None and found != kind:
        raise ValueError(f"expected a {kind} model, found a {found} model")
    n_features = getattr(obj.named_steps["scale"], "n_features_in_", None)
    if n_features != len(dataset.feature_names()):
        raise ValueError(
            f"the pipeline is not fitted on the {len(dataset.feature_names())} Wisconsin features"
        )
    classes = getattr(estimator, "classes_", None)
    if classes is None or [int(c) for c in classes] != [0, 1]:
        raise ValueError("the model's classes are not 0 (benign) and 1 (malignant)")
    return found


def load(store: ModelStore, kind: str) -> SealedDiagnosisModel:
    """The current sealed model of ``kind``; :class:`SealedModelError` if any check fails."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")
    return load_version(store, kind, None)


def load_version(store: ModelStore, kind: str, version: int | None) -> SealedDiagnosisModel:
    name = MODEL_NAMES[kind]
    obj, info = store.load(name, version, trusted_types=TRUSTED_TYPES)
    label = f"model {name!r} v{info.version}"
    try:
        check_pipeline(obj, kind)
        metadata = info.manifest.get("metadata", {})
        names = tuple(str(n) for n in metadata.get("feature_names", []))
        if names != dataset.feature_names():
            raise ValueError("it was sealed for other features than the Wisconsin data set's")
        ranges = FeatureRanges.from_metadata(metadata, names)
    except (ValueError, KeyError, TypeError) as exc:
        raise SealedModelError(f"{label}: {exc}", reason="invalid") from None
    assert isinstance(obj, Pipeline)  # check_pipeline proved it; this tells mypy
    return SealedDiagnosisModel(kind, obj, info, ranges)


def verify_all(store: ModelStore) -> dict[str, Any]:
    """Every sealed version of every diagnosis model checked as the service would load it
    (signature, name and version, digests, decryption, trusted types, pipeline shape) and the
    current one against the high-water record. ``ok`` is False if anything failed or nothing
    is sealed; each failure carries the store's one-line message and reason code."""
    results = []
    for kind in KINDS:
        name = MODEL_NAMES[kind]
        entry: dict[str, Any] = {"kind": kind, "model": name, "current_version": None}
        errors: list[str] = []
        try:
            mark = store.high_water(name)
            entry["high_water"] = mark.version if mark else None
            entry["current_version"] = load(store, kind).version
        except SealedModelError as exc:
            entry["reason"] = exc.reason
            errors.append(str(exc))
        checked: list[dict[str, Any]] = []
        for version in store.versions(name):
            try:
                load_version(store, kind, version)
                checked.append({"version": version, "ok": True})
            except SealedModelError as exc:
                checked.append(
                    {"version": version, "ok": False, "reason": exc.reason, "error": str(exc)}
                )
                if str(exc) not in errors:
                    errors.append(str(exc))
        entry["versions"] = checked
        entry["ok"] = not errors
        entry["errors"] = errors
        results.append(entry)
    return {"ok": all(e["ok"] for e in results), "models": results}
