"""The risk ensemble: four detectors, each calibrated on benign traffic, fused into one risk in
[0, 1] with the share each detector had in it kept for the explanation.

Every fusion works on the detectors' calibrated surprisals z = -ln(1 - F) (F: the benign CDF,
see :mod:`~carevault.security.calibration`); all three are fitted, each with its own operating
threshold, and ``fusion=`` picks the one that scores:

* ``"stacking"`` (default): a logistic regression on the surprisals fitted on labelled
  validation traffic (balanced classes, non-negative weights: being anomalous to a detector never
  lowers the risk). Contributions are each detector's share of the weighted evidence.
* ``"max"``: the most alarmed detector, each measured against *its own* operating threshold
  t_d: score = max_d (z_d - t_d). An event alerts when any detector alone would have alerted
  within its budget, up to a shift that keeps the union inside the same budget. No labels.
* ``"fisher"``: Fisher's method, the detectors' benign p-values combined (sum of surprisals).

Why stacking by default (numbers in docs/security.md, "Detectors and ensemble"): at the strict
false-positive budget, on traffic from five held-out seeds, it detected the most attack episodes
of the three fusions and stayed inside the budget on every seed; ``max`` lost episodes because
the union of four detectors' benign tails needs a higher threshold for each. The label-free
fusions are kept for the other case measured there, an attack class *absent* from training:
stacking has learnt to trust the supervised forest, which has never seen it, and ``fisher``
(then ``max``) caught more of such a class than stacking did.

The operating threshold is chosen on validation data so that the benign-session false-positive
rate is at most ``target_session_fpr`` *with confidence* ``fpr_confidence`` (a Clopper-Pearson
bound on the validation count, not its point estimate: the population of new traffic differs
from the validation one, and a threshold set at exactly the validation quantile was measured to
alert on about twice the budget on new seeds).

The risk scale is anchored on that threshold: **risk 0.5 is the operating threshold**, and each
unit of fused evidence above it (a nat of surprisal, or a unit of logit) multiplies the odds by
e (risk = sigmoid(score - threshold)). So the response levels (step-up at 0.5, then 0.7 / 0.85 /
0.95) start exactly where the false-positive budget says they may.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import beta
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from .calibration import MAX_SURPRISAL, BenignCalibrator
from .detectors import Detector, as_matrix, as_row, attack_mask, default_detectors

FUSIONS = ("stacking", "max", "fisher")
_LIMIT = 1e6  # thresholds are kept finite (a tiny validation set may give +-inf)


@dataclass(frozen=True)
class EnsembleScore:
    risk: float  # 0.5 at the operating threshold
    detectors: dict[str, float]  # calibrated score of each detector, in [0, 1]
    contributions: dict[str, float]  # each detector's share of the risk evidence (sums to 1)
    alert: bool  # above the operating threshold (risk > 0.5)


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    result: NDArray[np.float64] = 0.5 * (1.0 + np.tanh(0.5 * x))
    return result


def allowed_false_positives(n_sessions: int, target_fpr: float, confidence: float) -> int:
    """The most benign sessions that may alert on validation while the Clopper-Pearson upper
    bound (at ``confidence``) of the true session false-positive rate stays within ``target_fpr``
    (0 when even a clean validation cannot show that: then the threshold is the benign maximum)."""
    if confidence <= 0:
        return math.floor(target_fpr * n_sessions)
    allowed = 0
    for k in range(1, n_sessions):
        if float(beta.ppf(confidence, k + 1, n_sessions - k)) > target_fpr:
            break
        allowed = k
    return allowed


def session_threshold(
    scores: NDArray[np.float64],
    groups: NDArray[Any],
    target_fpr: float,
    confidence: float = 0.0,
) -> float:
    """The lowest threshold at which at most the allowed number of the sessions in ``groups``
    (all benign) have an event scoring above it (see :func:`allowed_false_positives`; with
    ``confidence=0``, simply ``target_fpr`` of them). Alerts are ``score > threshold``."""
    if scores.size == 0:
        return _LIMIT
    _, inverse = np.unique(groups, return_inverse=True)
    peaks = np.full(int(inverse.max()) + 1, -np.inf)
    np.maximum.at(peaks, inverse, scores)
    ordered = np.sort(peaks)[::-1]
    allowed = allowed_false_positives(ordered.size, target_fpr, confidence)
    threshold = float(ordered[allowed]) if allowed < ordered.size else -_LIMIT
    return float(np.clip(threshold, -_LIMIT, _LIMIT))


class RiskEnsemble(BaseEstimator):  # type: ignore[misc]
    def __init__(
        self,
        detectors: Sequence[tuple[str, Detector]] | None = None,
        fusion: str = "stacking",
        target_session_fpr: float = 0.001,
        fpr_confidence: float = 0.9,
        validation_fraction: float = 0.3,
        random_state: int | None = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.detectors = detectors
        self.fusion = fusion
        self.target_session_fpr = target_session_fpr
        self.fpr_confidence = fpr_confidence
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- fitting ---------------------------------------------------------------------------------

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        X_val: ArrayLike | None = None,
        y_val: ArrayLike | None = None,
        groups_val: ArrayLike | None = None,
    ) -> Self:
        """Fit the detectors on (X, y), then calibrate, fuse and pick the thresholds on the
        validation set (X_val, y_val; a stratified split of X when not given). ``groups_val``
        names each validation event's session, for the session-level threshold (without it,
        each event counts as its own session)."""
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        matrix = as_matrix(X)
        attack = attack_mask(y)
        if attack.shape[0] != matrix.shape[0]:
            raise ValueError("X and y have different numbers of rows")
        if X_val is None:
            matrix, attack, val, val_attack, groups = self._split(matrix, attack)
        else:
            val, val_attack = as_matrix(X_val), attack_mask(y_val if y_val is not None else [])
            if val_attack.shape[0] != val.shape[0]:
                raise ValueError("X_val and y_val have different numbers of rows")
            groups = np.arange(val.shape[0]) if groups_val is None else np.asarray(groups_val)
        benign = ~val_attack
        if not benign.any():
            raise ValueError("calibration needs benign rows in the validation set")
        if self.fusion == "stacking" and not val_attack.any():
            raise ValueError("stacking needs labelled attack rows in the validation set")
        members = (
            list(self.detectors)
            if self.detectors is not None
            else default_detectors(self.random_state, self.n_jobs)
        )
        self.names_ = tuple(name for name, _ in members)
        self.detectors_: dict[str, Detector] = {}
        for name, template in members:
            detector = clone(template)
            if detector.supervised:
                detector.fit(matrix, attack)
            else:
                detector.fit(matrix[~attack])
            self.detectors_[name] = detector
        raw = {name: d.anomaly_score(val) for name, d in self.detectors_.items()}
        self.calibrators_ = {
            name: BenignCalibrator().fit(scores[benign]) for name, scores in raw.items()
        }
        surprisal = np.column_stack([self.calibrators_[n].surprisal(raw[n]) for n in self.names_])
        benign_groups = groups[benign]
        # Each detector alone at the session budget: the scale of "max", and the evaluation's
        # per-detector operating points.
        self.detector_thresholds_ = {
            name: session_threshold(
                surprisal[benign, i], benign_groups, self.target_session_fpr, self.fpr_confidence
            )
            for i, name in enumerate(self.names_)
        }
        self.offsets_ = np.array([self.detector_thresholds_[n] for n in self.names_])
        self._fit_stacking(surprisal, val_attack)
        self.fusion_thresholds_ = {
            fusion: session_threshold(
                self.fused_score(surprisal[benign], fusion),
                benign_groups,
                self.target_session_fpr,
                self.fpr_confidence,
            )
            for fusion in FUSIONS
            if fusion != "stacking" or self.stacking_coef_ is not None
        }
        self.threshold_score_ = self.fusion_thresholds_[self.fusion]
        self.threshold_ = 0.5  # by construction of risk_from_score
        self.n_features_in_ = matrix.shape[1]
        return self

    def _split(
        self, matrix: NDArray[np.float64], attack: NDArray[np.bool_]
    ) -> tuple[Any, Any, Any, Any, Any]:
        rng = np.random.default_rng(self.random_state)
        is_val = np.zeros(attack.shape[0], dtype=bool)
        for cls in (True, False):
            rows = np.flatnonzero(attack == cls)
            take = round(self.validation_fraction * rows.size)
            is_val[rng.choice(rows, take, replace=False)] = True
        groups = np.flatnonzero(is_val)  # each event its own session
        return matrix[~is_val], attack[~is_val], matrix[is_val], attack[is_val], groups

    def _fit_stacking(self, surprisal: NDArray[np.float64], attack: NDArray[np.bool_]) -> None:
        self.stacking_coef_: NDArray[np.float64] | None = None
        self.stacking_intercept_ = 0.0
        if attack.all() or not attack.any():
            return  # no labels to stack on: only the label-free fusions are available
        k = surprisal.shape[1]
        active = np.ones(k, dtype=bool)
        # Non-negative weights: refit without any detector that got a negative one, so that being
        # anomalous to a detector never lowers the risk (and explanations stay additive).
        while True:
            model = LogisticRegression(class_weight="balanced", C=1.0, max_iter=2000)
            model.fit(surprisal[:, active], attack)
            weights = model.coef_[0]
            if (weights >= 0).all() or active.sum() == 1:
                break
            active[np.flatnonzero(active)[weights < 0]] = False
        coef = np.zeros(k)
        coef[active] = np.maximum(weights, 0.0)
        self.stacking_coef_ = coef
        self.stacking_intercept_ = float(model.intercept_[0])

    # -- scoring ---------------------------------------------------------------------------------

    def surprisals(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated surprisal of each detector for each row, shape (n, k)."""
        check_is_fitted(self)
        matrix = as_matrix(X)
        return np.column_stack(
            [
                self.calibrators_[n].surprisal(self.detectors_[n].anomaly_score(matrix))
                for n in self.names_
            ]
        )

    def fused_score(
        self, surprisal: NDArray[np.float64], fusion: str | None = None
    ) -> NDArray[np.float64]:
        """A fusion's own monotone score of surprisal rows (a margin, a logit or a sum)."""
        z = np.asarray(surprisal, dtype=np.float64)
        fusion = fusion or self.fusion
        if fusion == "max":
            result: NDArray[np.float64] = (z - self.offsets_).max(axis=1)
        elif fusion == "stacking":
            if self.stacking_coef_ is None:
                raise ValueError("this ensemble was fitted without labels: no stacking weights")
            result = z @ self.stacking_coef_ + self.stacking_intercept_
        elif fusion == "fisher":
            result = z.sum(axis=1)
        else:
            raise ValueError(f"unknown fusion {fusion!r}")
        return result

    def risk_from_score(
        self, score: NDArray[np.float64], fusion: str | None = None
    ) -> NDArray[np.float64]:
        """Risk in [0, 1], 0.5 at the fusion's operating threshold."""
        threshold = self.fusion_thresholds_[fusion or self.fusion]
        return _sigmoid(np.asarray(score, dtype=np.float64) - threshold)

    def risk(self, X: ArrayLike) -> NDArray[np.float64]:
        """The fused risk of each row, in [0, 1]."""
        return self.risk_from_score(self.fused_score(self.surprisals(X)))

    def alerts(self, X: ArrayLike) -> NDArray[np.bool_]:
        return np.asarray(self.fused_score(self.surprisals(X)) > self.threshold_score_)

    def score_one(self, x: ArrayLike) -> EnsembleScore:
        """Risk, calibrated detector scores and contributions of one feature vector (fast path:
        no scikit-learn call, well under a millisecond)."""
        row = as_row(x)
        z = np.array(
            [
                self.calibrators_[n].surprisal_one(self.detectors_[n].anomaly_score_one(row))
                for n in self.names_
            ]
        )
        score = float(self.fused_score(z[None, :])[0])
        risk = 0.5 * (1.0 + math.tanh(0.5 * (score - self.threshold_score_)))
        if self.fusion == "stacking" and self.stacking_coef_ is not None:
            evidence = self.stacking_coef_ * z
        elif self.fusion == "max":
            # How far each detector is past its own threshold (only those past it count).
            evidence = np.maximum(z - self.offsets_, 0.0)
            if not evidence.any():
                evidence = np.maximum(z, 0.0)
        else:
            evidence = np.maximum(z, 0.0)
        total = float(evidence.sum())
        shares = evidence / total if total > 0 else np.zeros_like(evidence)
        return EnsembleScore(
            risk=risk,
            detectors={
                n: -math.expm1(-min(float(v), MAX_SURPRISAL))
                for n, v in zip(self.names_, z, strict=True)
            },
            contributions={n: float(s) for n, s in zip(self.names_, shares, strict=True)},
            alert=score > self.threshold_score_,
        )
