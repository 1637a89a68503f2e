"""The extraction monitor: off-manifold probes, near-repeat probes and PRADA's distance test
alarm and stick; a doctor's stream of real cases, one rare case included, does not."""

from __future__ import annotations

import numpy as np
import pytest

from carevault.modelguard.dataset import load_split
from carevault.modelguard.extraction import ExtractionMonitor

SPLIT = load_split()


@pytest.fixture
def monitor() -> ExtractionMonitor:
    return ExtractionMonitor(SPLIT.X_train)


def _doctor_stream(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x_all = np.vstack([SPLIT.X_train, SPLIT.X_test])
    idx = rng.permutation(len(x_all))[:n]
    idx[rng.random(n) < 0.05] = idx[0]  # a follow-up of one patient now and then
    return x_all[idx] * (1 + rng.normal(0.0, 0.03, (n, x_all.shape[1])))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_doctors_stream_of_real_cases_never_alarms(monitor: ExtractionMonitor, seed: int) -> None:
    for x in _doctor_stream(seed, 120):
        verdict = monitor.observe("doctor", x)
        assert not verdict.alert, verdict.reason
    assert verdict.queries == 120
    assert verdict.statistic > monitor.delta


def test_one_rare_extreme_case_does_not_alarm(monitor: ExtractionMonitor) -> None:
    farthest = SPLIT.X_train[int(np.argmax(monitor.mahalanobis(SPLIT.X_train)))]
    stream = list(_doctor_stream(21, 40))
    stream.insert(5, farthest)
    assert not any(monitor.observe("doctor", x).alert for x in stream)


def test_samples_from_the_feature_box_are_cut_off_within_a_few_queries(
    monitor: ExtractionMonitor,
) -> None:
    rng = np.random.default_rng(0)
    lo, hi = SPLIT.X_train[:20].min(axis=0), SPLIT.X_train[:20].max(axis=0)
    for _ in range(10):
        verdict = monitor.observe("prober", rng.uniform(lo, hi))
        if verdict.alert:
            break
    assert verdict.alert
    assert verdict.queries <= 5
    assert "far outside the training cases" in verdict.reason
    assert monitor.is_cut_off("prober")
    assert not monitor.is_cut_off("someone-else")


def test_small_variations_around_one_case_are_cut_off(monitor: ExtractionMonitor) -> None:
    rng = np.random.default_rng(1)
    base, scale = SPLIT.X_train[3], SPLIT.X_train.std(axis=0)
    for _ in range(30):
        verdict = monitor.observe("walker", base + rng.normal(0, 0.02, base.shape) * scale)
        if verdict.alert:
            break
    assert verdict.alert
    assert "small variations of earlier ones" in verdict.reason


def test_distances_that_are_not_normal_raise_the_prada_alarm(monitor: ExtractionMonitor) -> None:
    """Pairs: a real case, then the same case moved just past the near-repeat radius along one
    feature. Half the minimum distances sit at one small value: far from log-normal."""
    scale = SPLIT.X_train.std(axis=0)
    step = np.zeros(SPLIT.n_features)
    step[0] = 1.3 * scale[0]
    alerts = []
    for x in SPLIT.X_train[100:160]:
        for q in (x, x + step):
            alerts.append(monitor.observe("prada", q))
            if alerts[-1].alert:
                break
        if alerts[-1].alert:
            break
    assert alerts[-1].alert
    assert "Shapiro-Wilk" in alerts[-1].reason
    assert alerts[-1].statistic < monitor.delta


def test_an_alarm_sticks_until_an_operator_clears_it(monitor: ExtractionMonitor) -> None:
    rng = np.random.default_rng(0)
    lo, hi = SPLIT.X_train.min(axis=0), SPLIT.X_train.max(axis=0)
    while not monitor.observe("prober", rng.uniform(lo, hi)).alert:
        pass
    # Even a perfectly ordinary case is refused now.
    assert monitor.observe("prober", SPLIT.X_test[0]).alert
    monitor.clear("prober")
    assert not monitor.is_cut_off("prober")
    assert not monitor.observe("prober", SPLIT.X_test[0]).alert


def test_the_alarm_reason_carries_no_feature_values(monitor: ExtractionMonitor) -> None:
    rng = np.random.default_rng(0)
    lo, hi = SPLIT.X_train.min(axis=0), SPLIT.X_train.max(axis=0)
    queries = []
    verdict = None
    while verdict is None or not verdict.alert:
        queries.append(rng.uniform(lo, hi))
        verdict = monitor.observe("prober", queries[-1])
    for q in queries:
        for value in q[:5]:
            assert f"{value:.2f}" not in verdict.reason


def test_malformed_queries_and_settings_are_refused(monitor: ExtractionMonitor) -> None:
    with pytest.raises(ValueError, match="30 finite feature values"):
        monitor.observe("c", np.ones(29))
    with pytest.raises(ValueError, match="30 finite feature values"):
        monitor.observe("c", np.full(30, np.nan))
    with pytest.raises(ValueError, match="client id"):
        monitor.observe(" ", SPLIT.X_test[0])
    with pytest.raises(ValueError, match="at least ten"):
        ExtractionMonitor(SPLIT.X_train[:5])
    with pytest.raises(ValueError, match="delta"):
        ExtractionMonitor(SPLIT.X_train, delta=1.5)
    with pytest.raises(ValueError, match="ood_alarm"):
        ExtractionMonitor(SPLIT.X_train, ood_alarm=11, ood_window=10)
    with pytest.raises(ValueError, match="repeat"):
        ExtractionMonitor(SPLIT.X_train, repeat_share=0.0)
