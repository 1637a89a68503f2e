"""Training the encryption policy: the labelling rule does what docs/policy.md says, the forest
learns it, the compiled table is exactly the forest's predict(), and the sealed bundle keeps the
training data, the rule and the cost model beside the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _policy_models import COSTS, small_fitted

from carevault import cli
from carevault.crypto import Suite
from carevault.modelstore.datadir import model_store
from carevault.security.policy import (
    ALLOWED_SUITES,
    MODEL_NAME,
    STRONGEST,
    DataClass,
    PolicyInputs,
    grid_cell,
    grid_index,
    required_suite,
)
from carevault.security.policy_costs import CostModel
from carevault.security.policy_model import TRUSTED_TYPES, PolicyModel, load_policy
from carevault.security.policy_training import (
    INPUT_COLUMNS,
    LabelRule,
    fit,
    grid_matrix,
    render_train,
    rule_table_suite,
    sample_inputs,
    train,
)

RULE = LabelRule()


def write(data_class=DataClass.ORDINARY, size=1000, role="doctor", **load) -> PolicyInputs:
    return PolicyInputs(data_class, size, role, **load)


# -- the labelling rule --------------------------------------------------------------------------


def test_a_label_never_falls_below_the_documented_requirement():
    for x in sample_inputs(5, 3_000):
        assert RULE.label(x, COSTS).level >= required_suite(x.data_class, x.risk).level


def test_a_constrained_device_gets_the_cheapest_suite_that_meets_the_requirement():
    # Idle server, slow network: anyone else would get a level-4 suite here.
    idle = {"latency_ms": 500.0, "cpu_percent": 0.0}
    assert RULE.label(write(size=64, **idle), COSTS).level == 4
    assert RULE.label(write(size=64, constrained_device=True, **idle), COSTS).level == 3
    assert (
        RULE.label(write(DataClass.SENSITIVE, 64, risk=0.6, constrained_device=True), COSTS)
        is STRONGEST
    )


def test_a_busy_server_spends_no_spare_budget():
    busy = write(size=64, latency_ms=500.0, cpu_percent=95.0)
    assert RULE.budget_s(busy) == 0.0
    assert RULE.label(busy, COSTS) is Suite.AES_256_GCM
    flooded = write(size=64, latency_ms=500.0, traffic_rps=800.0)
    assert RULE.label(flooded, COSTS) is Suite.AES_256_GCM


def test_background_jobs_get_no_spare_budget():
    assert RULE.budget_s(write(role="system", latency_ms=500.0)) == 0.0


def test_equal_costs_go_to_the_stronger_suite_and_a_clearly_cheaper_one_wins():
    assert RULE.label(write(size=10_000), COSTS) is Suite.AES_256_GCM
    cheaper_128 = CostModel.from_lines(
        {
            Suite.AES_128_GCM: (5e-6, 0.5e-9),
            Suite.AES_192_GCM: (10e-6, 1e-9),
            Suite.AES_256_GCM: (10e-6, 1e-9),
            Suite.HYBRID_X25519_AES_256_GCM: (165e-6, 2e-9),
        }
    )
    big_busy = write(size=1 << 20, cpu_percent=99.0)
    assert RULE.label(big_busy, cheaper_128) is Suite.AES_128_GCM


def test_among_level_4_suites_the_cheapest_is_labelled():
    assert RULE.label(write(DataClass.SENSITIVE, 100, risk=0.9, cpu_percent=99.0), COSTS) is (
        Suite.HYBRID_X25519_AES_256_GCM
    )


def test_the_rule_table_baseline_is_the_requirement_alone():
    assert rule_table_suite(write(risk=0.0)) is Suite.AES_128_GCM
    assert rule_table_suite(write(DataClass.SENSITIVE, risk=0.55)) is STRONGEST


def test_a_cost_model_without_a_strong_enough_suite_is_an_error():
    only_aes_128 = CostModel.from_lines({Suite.AES_128_GCM: (1e-6, 1e-9)})
    with pytest.raises(ValueError, match="no suite of level 3"):
        RULE.label(write(DataClass.SENSITIVE), only_aes_128)


# -- the forest and its table --------------------------------------------------------------------


def test_the_compiled_table_agrees_with_the_forests_predict_on_random_inputs():
    fitted = small_fitted()
    inputs = sample_inputs(11, 5_000)
    predicted = fitted.forest.predict(grid_matrix(inputs))
    table = [int(fitted.table[grid_index(grid_cell(x))]) for x in inputs]
    assert table == predicted.tolist()
    # The policy's proposal is the same table after the monotone-risk guard: equal wherever that
    # guard raised nothing, never lower anywhere.
    levels = np.array([s.level for s in ALLOWED_SUITES])
    proposed = np.array([fitted.policy.propose(x).level for x in inputs])
    assert (proposed >= levels[predicted]).all()
    assert np.mean(proposed == levels[predicted]) > 0.99


def test_the_trained_policy_matches_the_rule_on_held_out_inputs():
    accuracy = small_fitted().report["accuracy"]
    assert accuracy["inputs"] == 2_000
    assert accuracy["exact"] > 0.95
    assert accuracy["below_floor"] == 0


def test_fitting_is_reproducible_for_a_seed():
    a = fit(seed=9, samples=400, held_out=10, n_estimators=2, costs=COSTS)
    b = fit(seed=9, samples=400, held_out=10, n_estimators=2, costs=COSTS)
    np.testing.assert_array_equal(a.table, b.table)


@pytest.mark.parametrize(
    "options",
    [{"samples": 10}, {"held_out": 0}, {"n_estimators": 0}, {"rounds": 0}],
)
def test_bad_training_options_are_refused_before_any_work(options):
    with pytest.raises(ValueError, match="train-policy needs"):
        fit(costs=COSTS, **options)


# -- sealing -------------------------------------------------------------------------------------


def test_the_sealed_policy_keeps_its_training_data_rule_and_costs_and_loads_back(tmp_path):
    store = model_store(tmp_path)
    report = train(store, seed=2, samples=800, held_out=100, n_estimators=3, costs=COSTS)
    bundle, info = store.load(MODEL_NAME, trusted_types=TRUSTED_TYPES)
    assert isinstance(bundle, PolicyModel)
    assert bundle.training_inputs_.shape == (800, len(INPUT_COLUMNS))
    assert bundle.training_labels_.shape == (800,)
    assert bundle.rule_["version"] == RULE.version
    assert [c["suite"] for c in bundle.costs_["suites"]] == [s.label for s in COSTS.costs]
    assert info.manifest["metadata"]["samples"] == 800
    policy = load_policy(tmp_path)
    assert policy.has_model
    described = policy.describe()
    assert (described["source"], described["version"]) == ("model", report["version"])
    assert described["trained_at"]


def test_a_bundle_for_another_grid_is_refused_on_load(tmp_path):
    fitted = fit(seed=1, samples=300, held_out=10, n_estimators=1, costs=COSTS)
    bundle = PolicyModel(
        fitted.forest,
        fitted.table,
        training_inputs=np.zeros((1, len(INPUT_COLUMNS))),
        training_labels=np.zeros(1, dtype=np.int64),
        input_columns=INPUT_COLUMNS,
        rule={},
        costs={},
        report={},
    )
    bundle.grid_version_ = "grid/0"
    model_store(tmp_path).save(MODEL_NAME, bundle, trusted_types=TRUSTED_TYPES)
    assert not load_policy(tmp_path).has_model


def test_train_policy_on_the_command_line_measures_fits_and_seals(capsys):
    assert cli.main(["security", "train-policy", "--seed", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["suite"] for c in report["costs"]["suites"]] == [s.label for s in ALLOWED_SUITES]
    for cost in report["costs"]["suites"]:
        assert cost["per_call_us"] > 0
        assert set(cost["measured_us"]) == {"16", "256", "4096", "65536", "1048576"}
    assert sum(report["label_distribution"].values()) == report["samples"]
    assert report["accuracy"]["below_floor"] == 0
    assert report["version"] >= 1
    # The table for people, from the same report.
    text = render_train(report)
    assert "measured cost model" in text
    assert f"sealed {MODEL_NAME} v{report['version']}" in text
