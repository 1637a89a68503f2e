"""The risk ensemble: one risk in [0, 1] anchored on the operating threshold, per-detector
scores and contributions, a session-level false-positive budget, and hard rules that override
whatever the models say."""

from __future__ import annotations

import numpy as np
import pytest
from _security_models import datasets, ensemble, small_detectors

from carevault.security.assessment import Assessment
from carevault.security.ensemble import (
    FUSIONS,
    RiskEnsemble,
    allowed_false_positives,
    session_threshold,
)
from carevault.security.events import AttackClass, Event, EventKind
from carevault.security.features import FeatureExtractor
from carevault.security.rules import RULES, check
from carevault.security.scoring import EnsembleRiskScorer, ScoredAssessment

NAMES = {"iforest", "ocsvm", "forest", "autoencoder"}


def test_risk_is_in_the_unit_interval_and_attacks_rank_above_benign_events():
    train, _ = datasets()
    risk = ensemble().risk(train.X)
    assert ((risk >= 0) & (risk <= 1)).all()
    assert np.median(risk[train.attack]) > np.quantile(risk[~train.attack], 0.99)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_each_fusion_is_fitted_with_its_own_operating_threshold(fusion):
    model = ensemble(fusion)
    assert set(model.fusion_thresholds_) == set(FUSIONS)
    assert model.threshold_score_ == model.fusion_thresholds_[fusion]
    _, val = datasets()
    fused = model.fused_score(model.surprisals(val.X))
    # Risk 0.5 is the operating threshold, whatever the fusion.
    risk = model.risk_from_score(np.array([model.threshold_score_]))
    assert risk[0] == pytest.approx(0.5)
    assert ((model.risk(val.X) > 0.5) == (fused > model.threshold_score_)).all()


def test_the_threshold_keeps_benign_validation_sessions_within_the_budget():
    model = ensemble()
    _, val = datasets()
    alerts = model.alerts(val.X)
    benign = ~val.attack
    sessions = np.unique(val.groups[benign])
    alerted = np.unique(val.groups[benign & alerts])
    allowed = allowed_false_positives(sessions.size, model.target_session_fpr, 0.9)
    assert alerted.size <= allowed


def test_stacking_weights_are_never_negative():
    assert (ensemble().stacking_coef_ >= 0).all()


def test_scoring_one_vector_matches_the_batch_path_and_explains_itself():
    model = ensemble()
    train, _ = datasets()
    rows = np.flatnonzero(train.attack)[:50].tolist() + np.flatnonzero(~train.attack)[:50].tolist()
    batch = model.risk(train.X[rows])
    for row, expected in zip(rows, batch, strict=True):
        scored = model.score_one(train.X[row])
        assert scored.risk == pytest.approx(expected, abs=1e-9)
        assert set(scored.detectors) == NAMES
        assert all(0.0 <= v <= 1.0 for v in scored.detectors.values())
        assert set(scored.contributions) == NAMES
        total = sum(scored.contributions.values())
        assert total == pytest.approx(1.0) or total == 0.0
        assert scored.alert == (scored.risk > 0.5)


def test_an_unknown_fusion_is_refused():
    train, _ = datasets()
    with pytest.raises(ValueError, match="fusion"):
        RiskEnsemble(detectors=small_detectors(), fusion="vote").fit(train.X, train.attack)


def test_without_a_validation_set_it_splits_one_off_the_training_data():
    train, _ = datasets()
    model = RiskEnsemble(detectors=small_detectors(), fusion="max").fit(train.X, train.attack)
    assert model.risk(train.X[:10]).shape == (10,)


def test_the_session_threshold_allows_only_the_budgeted_sessions():
    scores = np.array([1.0, 5.0, 2.0, 9.0, 3.0, 3.5])
    groups = np.array(["a", "a", "b", "c", "d", "d"])
    # Four sessions, peaks a=5, b=2, c=9, d=3.5; a 25% budget lets one session alert.
    assert session_threshold(scores, groups, 0.25) == 5.0
    assert session_threshold(scores, groups, 0.0) == 9.0
    assert allowed_false_positives(1000, 0.001, 0.9) == 0
    assert allowed_false_positives(10_000, 0.001, 0.9) == 5
    assert allowed_false_positives(10_000, 0.001, 0.0) == 10


# -- the scorer and its hard rules ---------------------------------------------------------------


def scorer() -> EnsembleRiskScorer:
    return EnsembleRiskScorer(ensemble(), FeatureExtractor())


def clinician_read(at: float, **fields) -> Event:
    base = dict(kind=EventKind.PHI_READ, actor="dr.ok", role="doctor", address="10.0.0.5",
                network="10.0.0.0/16", client="c1", session="s1", records=1)  # fmt: skip
    return Event(at=at, **{**base, **fields})


def test_assess_returns_an_assessment_with_detectors_contributions_and_features():
    train, _ = datasets()
    s = scorer()
    results = [s.assess(e) for e in train.events[:3000]]
    assert all(isinstance(r, Assessment) and isinstance(r, ScoredAssessment) for r in results)
    assert all(set(r.detectors) == NAMES for r in results)
    attacks = [
        r for r, e in zip(results, train.events, strict=False) if e.label is not AttackClass.BENIGN
    ]
    assert attacks
    assert any(r.features for r in attacks)
    assert max(r.risk for r in attacks) > 0.5


def test_an_aead_failure_on_stored_data_is_risk_one_whatever_the_models_say():
    s = scorer()
    for i in range(20):  # a quiet clinician reading records: nothing for the models to see
        s.assess(clinician_read(1_736_150_000.0 + 60 * i))
    tampered = clinician_read(
        1_736_151_300.0, kind=EventKind.DECRYPTION_FAILURE, outcome="failed", stored_data=True
    )
    result = s.assess(tampered)
    assert result.risk == 1.0
    assert result.rules == ("aead_failure_at_rest",)
    assert result.alert


def test_a_signature_failure_on_stored_records_is_high_risk():
    result = scorer().assess(
        clinician_read(1_736_150_000.0, kind=EventKind.SIGNATURE_FAILURE, stored_data=True)
    )
    assert result.rules == ("signature_failure_at_rest",)
    assert result.risk >= 0.95


def test_a_decryption_failure_on_input_is_left_to_the_models():
    event = clinician_read(1_736_150_000.0, kind=EventKind.DECRYPTION_FAILURE, stored_data=False)
    assert check(event, RULES).fired == ()
    assert scorer().assess(event).rules == ()
