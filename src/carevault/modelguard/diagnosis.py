"""The diagnosis service: one patient's 30 measurements in, a checked, explained diagnosis out.

Domain logic only (no Django). The web layer builds one :class:`DiagnosisService` per process
and calls :meth:`DiagnosisService.diagnose`; it passes a callback for security events, which is
how a refused model (tampered, rolled back, unsigned) reaches the threat detection.

* **Models** come from the sealed model store only (:mod:`.sealed`): the logistic regression
  and the random forest trained by ``carevault model train``.
* **Input** is validated strictly before any model sees it: exactly the 30 features (by
  position or by name), finite numbers, and each inside the plausible range signed into the
  model's manifest. Errors name the feature, never its value (values are patient data).
* **Explanations** say how each feature moved this prediction, in the model's own terms: for
  the logistic model coefficient x standardised value (its log-odds are exactly the sum of
  these plus the intercept); for the forest, tree-path contributions (Saabas): along each tree's
  decision path, the change in P(malignant) at every split is credited to the split's feature;
  averaged over the trees they add up exactly to the forest's probability. They are not
  Shapley values and favour features split near the roots; the explanation says so.
* **Resilience.** The service keeps the last model that passed every check. When a newer sealed
  version is refused, it reports a security event and keeps serving that model; it never goes
  back to a lower version than it has served, even if the directory (high-water record
  included) is restored from an old copy.
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from carevault.modelstore.datadir import model_store
from carevault.modelstore.store import HIGH_WATER, ModelStore, SealedModelError, remedy

from . import sealed
from .models import FOREST, KINDS, LOGISTIC
from .sealed import MODEL_NAMES, FeatureRanges, SealedDiagnosisModel

logger = logging.getLogger(__name__)

SecurityEventSink = Callable[[str, dict[str, Any]], None]

THRESHOLD = 0.5  # P(malignant) at or above which the label is malignant
TOP_FEATURES = 5
# How often (seconds) a diagnosis looks at the model directory for a newer version: a listing
# and a few stat() calls, cheap, but not on every request of a busy server.
DEFAULT_CHECK_SECONDS = 5.0

# Security event kinds, by the store's refusal reason.
EVENT_KINDS = {
    "tampered": "model_tampered",
    "rollback": "model_rollback",
    "unsigned": "model_unsigned",
    "untrusted": "model_untrusted",
}
EVENT_REFUSED = "model_refused"  # any other refusal (wrong master key, invalid contents, ...)

LOGISTIC_METHOD = (
    "coefficient x standardised value: the model's log-odds are exactly the sum of these "
    "contributions plus the baseline (its intercept)"
)
FOREST_METHOD = (
    "tree-path contributions (Saabas): the change in P(malignant) at each split on a tree's "
    "decision path, credited to the split's feature and averaged over the trees; they add up "
    "exactly to the forest's probability minus the baseline (the mean share of malignant cases "
    "in the trees' bootstrap samples), but are not Shapley values and favour features split "
    "near the roots"
)


class InvalidFeatures(ValueError):
    """The features given cannot be diagnosed; the message names the feature, not its value."""

    def __init__(self, message: str, feature: str | None = None) -> None:
        super().__init__(message)
        self.feature = feature


class DiagnosisUnavailable(Exception):
    """No model of the kind asked for has passed its checks in this process."""


@dataclass(frozen=True)
class Contribution:
    feature: str
    # Positive pushes towards malignant, negative towards benign; in the explanation's unit.
    contribution: float

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "contribution": self.contribution}


@dataclass(frozen=True)
class Explanation:
    method: str
    unit: str  # "log-odds" (logistic) or "probability" (forest)
    baseline: float
    top: tuple[Contribution, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "unit": self.unit,
            "baseline": self.baseline,
            "top": [c.as_dict() for c in self.top],
        }


@dataclass(frozen=True)
class Diagnosis:
    label: str  # "malignant" or "benign"
    probability: float  # P(malignant)
    model: str  # the sealed model's name, e.g. "diagnosis-logistic"
    kind: str  # "logistic" or "forest"
    version: int
    explanation: Explanation
    threshold: float = THRESHOLD

    @property
    def malignant(self) -> bool:
        return self.label == "malignant"

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "probability": self.probability,
            "model": self.model,
            "kind": self.kind,
            "version": self.version,
            "threshold": self.threshold,
            "explanation": self.explanation.as_dict(),
        }


# -- input ---------------------------------------------------------------------------------------


def _number(value: object, feature: str) -> float:
    # bool is an int to Python, but a checkbox is not a measurement.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidFeatures(f"feature {feature!r} is not a number", feature)
    number = float(value)
    if not math.isfinite(number):
        raise InvalidFeatures(f"feature {feature!r} is not a finite number", feature)
    return number


def validate(
    features: Sequence[object] | Mapping[str, object], ranges: FeatureRanges
) -> NDArray[np.float64]:
    """One patient's features as a (1, 30) array, or :class:`InvalidFeatures` naming the first
    feature at fault. ``features`` is a sequence in the data set's order or a name -> value
    mapping with exactly the data set's names."""
    names = ranges.names
    if isinstance(features, Mapping):
        missing = [n for n in names if n not in features]
        unknown = sorted(str(k) for k in features if k not in names)
        if unknown:
            raise InvalidFeatures(f"unknown feature {unknown[0]!r}", unknown[0])
        if missing:
            raise InvalidFeatures(
                f"missing feature {missing[0]!r} ({len(missing)} of {len(names)} missing)",
                missing[0],
            )
        values = [features[n] for n in names]
    elif isinstance(features, str | bytes):
        raise InvalidFeatures(f"expected {len(names)} numbers, got text")
    else:
        values = list(features)
        if len(values) != len(names):
            raise InvalidFeatures(f"expected {len(names)} features, got {len(values)}")
    row = np.array([_number(v, n) for v, n in zip(values, names, strict=True)])
    outside = np.flatnonzero((row < ranges.low) | (row > ranges.high))
    if outside.size:
        i = int(outside[0])
        raise InvalidFeatures(
            f"feature {names[i]!r} is outside its plausible range "
            f"[{ranges.low[i]:.4g}, {ranges.high[i]:.4g}] (a unit mistake or a typo?)",
            names[i],
        )
    return row.reshape(1, -1)


# -- explanations --------------------------------------------------------------------------------


def logistic_contributions(
    pipeline: Pipeline, X: NDArray[np.float64]
) -> tuple[float, NDArray[Any]]:
    """Baseline (the intercept) and per-feature log-odds contributions for one row."""
    model = pipeline.named_steps["model"]
    assert isinstance(model, LogisticRegression)
    z = pipeline.named_steps["scale"].transform(X)[0]
    return float(model.intercept_[0]), np.asarray(model.coef_[0] * z, dtype=np.float64)


def forest_contributions(pipeline: Pipeline, X: NDArray[np.float64]) -> tuple[float, NDArray[Any]]:
    """Baseline (mean root P(malignant)) and per-feature tree-path contributions for one row."""
    forest = pipeline.named_steps["model"]
    assert isinstance(forest, RandomForestClassifier)
    # Trees compare in float32, as scikit-learn's own predict does.
    z = pipeline.named_steps["scale"].transform(X)[0].astype(np.float32)
    baseline = 0.0
    contributions = np.zeros(z.shape[0], dtype=np.float64)
    for estimator in forest.estimators_:
        tree = estimator.tree_
        value = tree.value[:, 0, :]
        malignant = value[:, 1] / value.sum(axis=1)
        node = 0
        baseline += malignant[0]
        while tree.children_left[node] != -1:
            feature = tree.feature[node]
            if z[feature] <= tree.threshold[node]:
                child = tree.children_left[node]
            else:
                child = tree.children_right[node]
            contributions[feature] += malignant[child] - malignant[node]
            node = child
    n = len(forest.estimators_)
    return float(baseline / n), contributions / n


def explain(
    model: SealedDiagnosisModel, X: NDArray[np.float64], top: int = TOP_FEATURES
) -> Explanation:
    if model.kind == LOGISTIC:
        baseline, values = logistic_contributions(model.pipeline, X)
        method, unit = LOGISTIC_METHOD, "log-odds"
    else:
        baseline, values = forest_contributions(model.pipeline, X)
        method, unit = FOREST_METHOD, "probability"
    order = np.argsort(-np.abs(values), kind="stable")[:top]
    names = model.ranges.names
    return Explanation(
        method, unit, baseline, tuple(Contribution(names[i], float(values[i])) for i in order)
    )


# -- the service ---------------------------------------------------------------------------------


@dataclass
class _Slot:
    """What the service knows about one model kind."""

    kind: str
    model: SealedDiagnosisModel | None = None
    # The highest version ever served here: never go below it (in-memory rollback guard).
    served_high: int = 0
    fingerprint: tuple[Any, ...] | None = None
    checked_at: float = -math.inf
    refused: dict[str, Any] | None = None
    reported: set[tuple[Any, ...]] = field(default_factory=set)


class DiagnosisService:
    """Diagnoses with the sealed diagnosis models of one model store.

    ``on_security_event(kind, details)`` is called (once per distinct refusal) when a sealed
    model is refused; ``details`` holds the model's name, the version refused, the reason code,
    the error message and the version still served (None if none), never patient data.
    """

    def __init__(
        self,
        store: ModelStore,
        *,
        on_security_event: SecurityEventSink | None = None,
        check_seconds: float = DEFAULT_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.on_security_event = on_security_event
        self.check_seconds = check_seconds
        self.clock = clock
        self._slots = {kind: _Slot(kind) for kind in KINDS}
        self._lock = threading.Lock()

    @classmethod
    def for_data_dir(
        cls, data_dir: str | Path, *, on_security_event: SecurityEventSink | None = None
    ) -> DiagnosisService:
        """The service over ``data_dir/models``, keyed by the configured master key."""
        return cls(model_store(data_dir), on_security_event=on_security_event)

    # -- public ----------------------------------------------------------------------------------

    def diagnose(
        self,
        features: Sequence[object] | Mapping[str, object],
        *,
        model: str = LOGISTIC,
        top: int = TOP_FEATURES,
    ) -> Diagnosis:
        """Diagnose one patient with the model of kind ``model`` ("logistic" or "forest").

        Raises :class:`InvalidFeatures` (bad input; names the feature) or
        :class:`DiagnosisUnavailable` (no model of that kind has passed its checks)."""
        serving = self.model(model)
        X = validate(features, serving.ranges)
        probability = float(serving.pipeline.predict_proba(X)[0, 1])
        return Diagnosis(
            label="malignant" if probability >= THRESHOLD else "benign",
            probability=probability,
            model=serving.name,
            kind=serving.kind,
            version=serving.version,
            explanation=explain(serving, X, top),
        )

    def model(self, kind: str = LOGISTIC) -> SealedDiagnosisModel:
        """The model of ``kind`` being served (checking for a newer version when due)."""
        if kind not in self._slots:
            raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")
        with self._lock:
            slot = self._slots[kind]
            if slot.model is None or self.clock() - slot.checked_at >= self.check_seconds:
                self._refresh(slot)
            if slot.model is None:
                reason = slot.refused["error"] if slot.refused else "not loaded"
                raise DiagnosisUnavailable(f"no {kind} diagnosis model can be served: {reason}")
            return slot.model

    def refresh(self) -> None:
        """Look for newer versions of every model now (e.g. after `carevault model train`)."""
        with self._lock:
            for slot in self._slots.values():
                self._refresh(slot, force=True)

    def status(self) -> list[dict[str, Any]]:
        """Per model kind: the version served (None if none) and the last refusal, if any."""
        with self._lock:
            return [
                {
                    "kind": slot.kind,
                    "model": MODEL_NAMES[slot.kind],
                    "serving_version": slot.model.version if slot.model else None,
                    "metrics": slot.model.metrics if slot.model else {},
                    "refused": dict(slot.refused) if slot.refused else None,
                }
                for slot in self._slots.values()
            ]

    # -- loading ---------------------------------------------------------------------------------

    def _fingerprint(self, name: str) -> tuple[Any, ...]:
        """What changes when anything in the model's directory does: a listing and stat()s."""
        directory = self.store.root / name
        parts: list[Any] = []
        for version in self.store.versions(name):
            for path in sorted((directory / f"v{version}").iterdir()):
                stat = path.stat()
                parts.append((version, path.name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
        try:
            stat = (directory / HIGH_WATER).stat()
            parts.append((HIGH_WATER, stat.st_size, stat.st_mtime_ns, stat.st_ino))
        except FileNotFoundError:
            parts.append((HIGH_WATER, None))
        return tuple(parts)

    def _refresh(self, slot: _Slot, *, force: bool = False) -> None:
        slot.checked_at = self.clock()
        name = MODEL_NAMES[slot.kind]
        try:
            fingerprint = self._fingerprint(name)
        except SealedModelError as exc:  # an invalid name: a programming error, not an attack
            raise DiagnosisUnavailable(str(exc)) from None
        except OSError:
            fingerprint = ("unreadable",)
        if fingerprint == slot.fingerprint and not force:
            return
        slot.fingerprint = fingerprint
        try:
            candidate = sealed.load(self.store, slot.kind)
        except SealedModelError as exc:
            self._refuse(slot, name, exc.reason, str(exc), self._newest_on_disk(name))
            return
        if candidate.version < slot.served_high:
            # The store's checks passed, so its high-water record was put back together with
            # older files: this process remembers a newer version and keeps it.
            self._refuse(
                slot,
                name,
                "rollback",
                f"model {name!r}: v{candidate.version} offered after v{slot.served_high} was "
                f"served (the directory was restored from an older copy): refusing it; "
                f"{remedy(name)} to seal a new version",
                candidate.version,
            )
            return
        if slot.model is None or candidate.version != slot.model.version:
            logger.info("diagnosis: serving %s v%s", name, candidate.version)
        slot.model = candidate
        slot.served_high = max(slot.served_high, candidate.version)
        slot.refused = None

    def _newest_on_disk(self, name: str) -> int | None:
        try:
            return max(self.store.versions(name), default=None)
        except (SealedModelError, OSError):
            return None

    def _refuse(
        self, slot: _Slot, name: str, reason: str, message: str, version: int | None
    ) -> None:
        serving = slot.model.version if slot.model else None
        slot.refused = {
            "model": name,
            "kind": slot.kind,
            "version": version,
            "reason": reason,
            "error": message,
            "serving_version": serving,
        }
        if reason == "missing" and serving is None:
            return  # never trained here: nothing to alarm about, diagnose() says what to run
        logger.error("diagnosis: %s refused (%s); serving v%s", name, message, serving)
        key = (reason, version, message)
        if key in slot.reported:
            return
        slot.reported.add(key)
        if self.on_security_event is not None:
            try:
                self.on_security_event(EVENT_KINDS.get(reason, EVENT_REFUSED), dict(slot.refused))
            except Exception:
                # The sink is the web layer's; its failure must not stop diagnoses with a model
                # that passed every check. It is logged loudly instead.
                logger.exception("diagnosis: the security event sink failed")


__all__ = [
    "FOREST",
    "LOGISTIC",
    "Contribution",
    "Diagnosis",
    "DiagnosisService",
    "DiagnosisUnavailable",
    "Explanation",
    "InvalidFeatures",
    "SecurityEventSink",
    "validate",
]
