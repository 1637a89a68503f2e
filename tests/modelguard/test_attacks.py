"""The attack lab's attackers and gate: equation solving recovers a model served with full
confidences, agreement is computed against our model's labels, budgets slow and the monitor
cuts off, and a cut-off run is the prefix of the same run left alone."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from carevault.modelguard.attacks import (
    AttackResult,
    Gate,
    GateClosed,
    checkpoints,
    equation_solving,
    real_cases,
    retraining,
    solve_linear,
    surrogate_agreement,
)
from carevault.modelguard.budgets import BudgetLimits, QueryBudget
from carevault.modelguard.dataset import load_split
from carevault.modelguard.extraction import ExtractionMonitor
from carevault.modelguard.models import fit, linear_form
from carevault.modelguard.obfuscation import OutputPolicy

SPLIT = load_split()
PUBLIC = SPLIT.X_train[:20]


@pytest.fixture(scope="module")
def model() -> Pipeline:
    return fit("logistic", SPLIT.X_train, SPLIT.y_train)


def gate(
    model: Pipeline,
    policy: OutputPolicy = OutputPolicy.FULL,
    *,
    monitor: bool = False,
    limits: BudgetLimits | None = None,
    wait: bool = True,
) -> Gate:
    return Gate(
        model,
        policy,
        ExtractionMonitor(SPLIT.X_train) if monitor else None,
        QueryBudget(limits) if limits else None,
        "attacker",
        timedelta(seconds=30),
        np.random.default_rng(0),
        wait_on_budget=wait,
    )


def test_equation_solving_on_full_confidences_recovers_the_weights(model: Pipeline) -> None:
    result = equation_solving(gate(model), PUBLIC, SPLIT.X_test, 40, 1)
    assert result.agreement == 1.0
    assert result.queries == 40
    assert not result.cut_off
    # d + 1 = 31 queries pin the affine score down; the lab says when it passed 90%.
    exceeded = result.queries_to_exceed(0.9)
    assert exceeded is not None
    assert exceeded <= 31


def test_solving_the_linear_system_gives_back_the_model_form(model: Pipeline) -> None:
    rng = np.random.default_rng(5)
    X = PUBLIC[rng.integers(20, size=40)] * (1 + rng.normal(0, 0.05, (40, 30)))
    w = solve_linear(list(X), list(model.decision_function(X)))
    form = linear_form(model)
    assert np.allclose(w[:-1], form.weights, rtol=1e-4, atol=1e-6)
    assert w[-1] == pytest.approx(form.bias, rel=1e-4)


def test_without_confidences_the_solver_falls_back_to_a_label_surrogate(model: Pipeline) -> None:
    result = equation_solving(gate(model, OutputPolicy.LABEL_ONLY), PUBLIC, SPLIT.X_test, 40, 1)
    assert 0.5 < result.agreement < 1.0  # a good surrogate, not the exact model


def test_agreement_is_measured_against_our_models_labels(model: Pipeline) -> None:
    ours = model.predict(SPLIT.X_test)
    # One class only: the surrogate is the majority label, agreeing where we say the same.
    assert surrogate_agreement([PUBLIC[0]], [0], model, SPLIT.X_test) == pytest.approx(
        float(np.mean(ours == 0))
    )
    assert surrogate_agreement([PUBLIC[0]], [1], model, SPLIT.X_test) == pytest.approx(
        float(np.mean(ours == 1))
    )
    # Trained on our own labels for the test cases themselves, it agrees (almost) everywhere;
    # trained on flipped labels, (almost) nowhere.
    X = list(SPLIT.X_test)
    assert surrogate_agreement(X, list(ours), model, SPLIT.X_test) > 0.97
    assert surrogate_agreement(X, list(1 - ours), model, SPLIT.X_test) < 0.03


def test_peak_and_first_crossing_read_the_curve() -> None:
    result = AttackResult("x", 30, True, "r", 0.8, ((5, 0.85), (10, 0.93), (20, 0.95)))
    assert result.peak_agreement == 0.95
    assert result.queries_to_exceed(0.9) == 10
    assert result.queries_to_exceed(0.96) is None
    assert AttackResult("x", 0, False, "", 0.6).peak_agreement == 0.6


def test_checkpoints_are_dense_early_and_stop_at_the_allowance() -> None:
    assert checkpoints(5) == [1, 2, 3, 4, 5]
    points = checkpoints(200)
    assert points[:40] == list(range(1, 41))
    assert points[-1] == 200
    assert points == sorted(set(points))


def test_a_full_budget_window_makes_the_attacker_wait_not_stop(model: Pipeline) -> None:
    g = gate(model, limits=BudgetLimits(per_hour=10, per_day=100))
    result = equation_solving(g, PUBLIC, SPLIT.X_test, 25, 1)
    assert result.queries == 25
    assert not result.cut_off
    assert g.budget_waits == 2
    assert result.elapsed >= timedelta(hours=2)


def test_without_waiting_the_budget_cuts_the_attacker_at_the_limit(model: Pipeline) -> None:
    g = gate(model, limits=BudgetLimits(per_hour=10, per_day=100), wait=False)
    result = equation_solving(g, PUBLIC, SPLIT.X_test, 25, 1)
    assert result.queries == 10
    assert result.reason == "budget: hour"
    with pytest.raises(GateClosed):
        g.query(PUBLIC[0])


def test_the_monitor_cuts_off_a_box_sampler_for_good(model: Pipeline) -> None:
    g = gate(model, monitor=True)
    result = equation_solving(g, PUBLIC, SPLIT.X_test, 100, 1, in_box=True)
    assert result.cut_off
    assert result.queries < 10
    assert result.reason.startswith("monitor:")
    assert result.peak_agreement <= 0.9
    with pytest.raises(GateClosed):
        g.query(SPLIT.X_test[0])


def test_a_cut_off_run_is_the_prefix_of_the_run_left_alone(model: Pipeline) -> None:
    guarded = retraining(gate(model, monitor=True), PUBLIC, SPLIT.X_test, 60, 1)
    free = retraining(gate(model), PUBLIC, SPLIT.X_test, 60, 1)
    assert guarded.cut_off
    assert guarded.queries < free.queries
    assert guarded.curve == free.curve[: len(guarded.curve)]
    assert dict(free.curve)[guarded.queries] == guarded.agreement


def test_the_monitor_cannot_tell_a_real_case_attacker_from_a_doctor(model: Pipeline) -> None:
    """The documented limit: real cases look like a doctor's; only the budget slows them."""
    result = real_cases(
        gate(model, OutputPolicy.LABEL_ONLY, monitor=True), SPLIT.X_train[20:], SPLIT.X_test, 60, 1
    )
    assert not result.cut_off
    assert result.peak_agreement > 0.9


def test_curves_can_be_skipped(model: Pipeline) -> None:
    result = equation_solving(gate(model), PUBLIC, SPLIT.X_test, 35, 1, curve=False)
    assert result.curve == ()
    assert result.agreement == 1.0
