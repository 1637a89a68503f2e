"""The training-time defences benchmark in quick mode: every section is measured, the figures
are the real ones (recomputed independently where cheap), JSON-clean and rendered."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from carevault.bench import models_training
from carevault.modelguard import poisoning, privacy
from carevault.modelguard.dataset import load_split


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return models_training.run(quick=True)


def test_a_quick_run_is_plain_json(result: dict[str, Any]) -> None:
    json.dumps(result, allow_nan=False)  # the CLI prints it with --json; no NaN or Infinity
    assert result["benchmark"] == "models-training"
    assert result["quick"] is True


def test_poisoning_is_reported_per_kind_on_the_injected_poison(result: dict[str, Any]) -> None:
    section = result["poisoning"]
    assert [(r["kind"], r["rate"]) for r in section["rows"]] == [
        (kind, 0.1) for kind in poisoning.POISON_KINDS
    ]
    # Recomputed here: the same injection and screen give the same precision/recall.
    seed = section["seeds"][0]
    assert seed >= 5  # not a split the thresholds were chosen on
    split = load_split(seed)
    half = len(split.y_train) // 2
    batch = poisoning.inject(split.X_train[half:], split.y_train[half:], "outlier", 0.1, seed)
    report = poisoning.screen(batch.X, batch.y, (split.X_train[:half], split.y_train[:half]))
    precision, recall = poisoning.precision_recall(report, batch.is_poison)
    row = section["rows"][1]
    assert row["precision"]["mean"] == precision
    assert row["recall"]["mean"] == recall
    assert row["poison_rows"]["mean"] == batch.is_poison.sum()
    for r in section["rows"]:
        assert 0.5 < r["accuracy_poisoned"]["mean"] <= 1.0
        assert 0.5 < r["accuracy_screened"]["mean"] <= 1.0
    assert section["clean_batch_rows_dropped"]["mean"] < 0.05


def test_the_dp_table_covers_every_epsilon_with_shrinking_noise(result: dict[str, Any]) -> None:
    section = result["privacy"]
    rows = section["rows"]
    assert [r["epsilon"] for r in rows] == list(models_training.EPSILONS)
    scales = [r["noise_scale"] for r in rows]
    assert all(a > b for a, b in itertools.pairwise(scales))
    assert scales[-1] == 0.0  # no epsilon, no noise
    assert scales[2] == privacy.gaussian_scale(section["sensitivity"], 1.0, section["delta"], 31)
    assert all(r["runs"] == len(section["seeds"]) for r in rows)
    assert 0.9 < section["served_logistic_accuracy"]["mean"] <= 1.0


def test_membership_shows_the_control_leaking_and_the_others_not(result: dict[str, Any]) -> None:
    section = result["membership"]
    names = [m["model"] for m in section["models"]]
    assert names == [
        "overfit forest (control)",
        "served logistic",
        "DP logistic, epsilon 1",
        "DP logistic, epsilon 8",
    ]
    advantage = {m["model"]: m["advantage"]["mean"] for m in section["models"]}
    # Deterministic models only: the DP rows carry fresh noise on every run.
    assert advantage["overfit forest (control)"] > 0.5
    assert abs(advantage["served logistic"]) < 0.1
    assert result["checks"]["control leaks clearly (advantage > 0.3)"] is True
    assert set(result["checks"]) == {
        "control leaks clearly (advantage > 0.3)",
        "logistic and DP models leak little (|advantage| < 0.1)",
    }


def test_the_table_names_every_section(result: dict[str, Any]) -> None:
    table = models_training.render(result)
    for text in (
        "label_flip",
        "boundary",
        "none (exact)",
        "served logistic (C=1)",
        "overfit forest",
    ):
        assert text in table
