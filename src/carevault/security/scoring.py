"""The trained risk scorer: features, the fitted ensemble and the hard rules behind one
``assess(event)`` call (the :class:`~carevault.security.assessment.RiskScorer` protocol).

:func:`load_scorer` opens the sealed model that ``carevault security train`` wrote into a data
directory (signature, decryption and trusted types checked by
:class:`~carevault.modelstore.store.ModelStore`); the web layer calls it through
``carevault.security.baseline.load_scorer_or_baseline``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from carevault.modelstore.datadir import model_store
from carevault.modelstore.store import ModelStore, SealedInfo, SealedModelError

from . import rules as hard_rules
from .assessment import Assessment
from .baseline import TRAINED_MODEL_NAME
from .ensemble import RiskEnsemble
from .events import Event
from .features import FEATURE_NAMES, FeatureExtractor

MODEL_NAME = TRAINED_MODEL_NAME
_FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}

# Every type a sealed risk ensemble may contain; anything else in the file is refused before
# skops builds a single object (skops also trusts its own default list of safe types).
TRUSTED_TYPES: tuple[str, ...] = (
    "carevault.security.calibration.BenignCalibrator",
    "carevault.security.detectors.autoencoder.AutoencoderDetector",
    "carevault.security.detectors.forest.RandomForestDetector",
    "carevault.security.detectors.iforest.IsolationForestDetector",
    "carevault.security.detectors.ocsvm.OneClassSVMDetector",
    "carevault.security.ensemble.RiskEnsemble",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.tree._tree.Tree",
)


@dataclass(frozen=True)
class ScoredAssessment(Assessment):
    """An :class:`Assessment` that also says how much each detector weighed in the risk."""

    # Each detector's share of the fused evidence (sums to 1 when any detector saw something).
    contributions: dict[str, float] = field(default_factory=dict)
    alert: bool = False  # above the operating threshold (risk > 0.5), or a hard rule fired


class EnsembleRiskScorer:
    """Scores events one at a time with the fitted ensemble (the request path).

    The feature extractor keeps sliding windows per account, address and session, so events must
    arrive in time order and the extractor is shared under a lock; the detectors themselves are
    read-only after fitting.
    """

    def __init__(
        self,
        ensemble: RiskEnsemble,
        extractor: FeatureExtractor | None = None,
        *,
        rules: tuple[hard_rules.Rule, ...] = hard_rules.RULES,
        top_features: int = 5,
        info: SealedInfo | None = None,
    ) -> None:
        self.ensemble = ensemble
        self.extractor = extractor if extractor is not None else FeatureExtractor()
        self.rules = rules
        self.top_features = top_features
        self.info = info
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        manifest = self.info.manifest if self.info is not None else {}
        return {
            "name": MODEL_NAME,
            "version": str(self.info.version) if self.info is not None else "unsealed",
            "trained_at": str(manifest.get("created_at", "")),
            "fusion": self.ensemble.fusion,
            "detectors": list(self.ensemble.names_),
        }

    def assess(self, event: Event) -> ScoredAssessment:
        with self._lock:
            vector = np.asarray(self.extractor.transform_one(event), dtype=np.float64)
        fired = hard_rules.check(
            event, self.rules, hard_rules.FeatureRow(vector.tolist(), _FEATURE_INDEX)
        )
        score = self.ensemble.score_one(vector)
        risk = max(score.risk, fired.floor)
        return ScoredAssessment(
            risk=risk,
            detectors=score.detectors,
            features=self._top_features(vector),
            rules=fired.fired,
            contributions=score.contributions,
            alert=score.alert or fired.floor > 0.5,
        )

    def _top_features(self, vector: np.ndarray[Any, Any]) -> dict[str, float]:
        explained = self.extractor.explain(vector)
        items = list(explained.items()) if isinstance(explained, dict) else list(explained)
        return {str(name): float(value) for name, value in items[: self.top_features]}


def load_ensemble(store: ModelStore, version: int | None = None) -> tuple[RiskEnsemble, SealedInfo]:
    ensemble, info = store.load(MODEL_NAME, version, trusted_types=TRUSTED_TYPES)
    if not isinstance(ensemble, RiskEnsemble):
        raise SealedModelError(f"model {MODEL_NAME!r} v{info.version} is not a risk ensemble")
    names = list(info.manifest.get("metadata", {}).get("feature_names", []))
    if names != list(FEATURE_NAMES):
        raise SealedModelError(
            f"model {MODEL_NAME!r} v{info.version} was trained on other features than this "
            "version of CareVault extracts: run `carevault security train` again"
        )
    return ensemble, info


def load_scorer(data_dir: str | Path, version: int | None = None) -> EnsembleRiskScorer | None:
    """The trained scorer sealed in ``data_dir``, or None when nothing was trained there.
    A model that fails any check raises :class:`SealedModelError`."""
    if not (Path(data_dir) / "models" / MODEL_NAME).is_dir():
        return None
    store = model_store(data_dir)
    ensemble, info = load_ensemble(store, version)
    return EnsembleRiskScorer(ensemble, info=info)
