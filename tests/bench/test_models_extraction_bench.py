"""The extraction bench in quick mode: every policy x attacker measured, the invariants that
do not depend on timing hold, and the table says what was met and what was missed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from carevault.bench import models_extraction as bench
from carevault.modelguard.guard import ClientKind
from carevault.modelguard.obfuscation import OutputPolicy


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return bench.run(quick=True)


def test_every_policy_meets_every_attacker(result: dict[str, Any]) -> None:
    pairs = {(r["policy"], r["attacker"]) for r in result["attacks"]}
    assert pairs == {(p.value, a) for p in OutputPolicy for a in bench.ATTACKERS}
    deployed = {(r["client_kind"], r["attacker"]) for r in result["deployed"]}
    assert deployed == {(k.value, a) for k in ClientKind for a in bench.ATTACKERS}
    json.dumps(result)  # a machine can read it


def test_each_row_is_consistent_with_itself(result: dict[str, Any]) -> None:
    for r in result["attacks"] + result["deployed"]:
        assert 0.0 <= r["agreement_at_cutoff"] <= r["peak_agreement"] <= 1.0
        assert r["goal_met"] == (r["peak_agreement"] <= bench.GOAL_AGREEMENT)
        assert r["queries_to_cutoff"] <= r["uncut_queries"] == result["max_queries"]
        if r["cut_off"]:
            assert r["reason"].startswith("monitor:")
        else:
            # Only the monitor stops an attacker; the budget only makes it wait.
            assert r["queries_to_cutoff"] == result["max_queries"]
        to_90 = r["uncut_queries_to_90"]
        if to_90 is not None and r["queries_to_cutoff"] >= to_90:
            assert not r["goal_met"]


def test_the_budget_makes_a_patient_attacker_wait(result: dict[str, Any]) -> None:
    uncut = [r for r in result["attacks"] if not r["cut_off"]]
    assert uncut
    # 120 queries at 40 an hour take more than two hours of waiting.
    assert all(r["hours_taken"] > 2 for r in uncut)
    api = [r for r in result["deployed"] if r["client_kind"] == "api" and not r["cut_off"]]
    assert all(r["hours_taken"] > 24 for r in api)  # 20 an hour, 100 a day


def test_full_confidences_give_the_equation_solver_the_exact_model(result: dict[str, Any]) -> None:
    row = next(
        r
        for r in result["attacks"]
        if r["policy"] == "full" and r["attacker"] == "equation-solving"
    )
    assert row["agreement_uncut"] == 1.0
    assert not row["goal_met"]
    assert result["goals"]["every attacker held to <= 90% agreement, every policy"] is False


def test_box_probes_are_cut_off_below_the_goal_under_every_policy(result: dict[str, Any]) -> None:
    for r in result["attacks"]:
        if r["attacker"] == "equation-solving, box":
            assert r["cut_off"], r
            assert r["goal_met"], r


def test_doctors_raise_no_alarm_and_lose_no_accuracy(result: dict[str, Any]) -> None:
    assert all(d["false_alarms"] == 0 for d in result["doctors"])
    assert all(d["delta"] <= d["lowest_w"] <= 1.0 for d in result["doctors"])
    assert result["goals"]["no false alarm on doctors"] is True
    costs = result["policy_costs"]
    assert set(costs) == {p.value for p in OutputPolicy}
    for cost in costs.values():
        # Every policy keeps the label, so legitimate accuracy is the full model's.
        assert cost["accuracy_loss_points"] == 0.0
        assert cost["accuracy"] == costs["full"]["accuracy"]
    assert result["goals"]["accuracy loss <= 0.5 points"] is True
    # The reverse sigmoid miscalibrates on purpose; rounding to one decimal costs next to none.
    assert costs["reverse-sigmoid"]["brier"] > costs["full"]["brier"]


def test_the_free_baseline_is_measured(result: dict[str, Any]) -> None:
    assert 0.5 < result["free_baseline_agreement"] <= 1.0


def test_the_table_shows_verdicts_and_costs(result: dict[str, Any]) -> None:
    text = bench.render(result)
    for heading in ("peak agreement", "uncut: queries to >90%", "goal", "client kind", "Brier"):
        assert heading in text
    assert "MISSED" in text
    assert "free baseline" in text
    assert "false alarms: 0" in text
    assert text.count("\n") > len(result["attacks"]) + len(result["deployed"])
