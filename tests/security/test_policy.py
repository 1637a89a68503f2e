"""The adaptive encryption policy's guards: whatever the model proposes and whatever a client
claims, a decision is on the allow-list, never below its floor, monotone in risk, and the
strongest suite when the model or the inputs cannot be trusted. The properties run over the
whole input space (absurd values, NaN, negative, wrong types) against the trained policy and
against deliberately bad tables, so they hold because of the guards, not because of the model."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from _policy_models import small_fitted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carevault.crypto import Suite
from carevault.security.policy import (
    ALLOWED_SUITES,
    CLASS_FLOOR,
    GRID_SHAPE,
    LEVEL_SUITE,
    MODEL_NAME,
    ROLES,
    STRONGEST,
    DataClass,
    EncryptionPolicy,
    PolicyInputs,
    input_problem,
    load_policy,
    monotone_in_risk,
    required_suite,
    strongest_policy,
)

CELLS = int(np.prod(GRID_SHAPE))
AES_128 = ALLOWED_SUITES.index(Suite.AES_128_GCM)


def trained() -> EncryptionPolicy:
    return small_fitted().policy


def weakest_everywhere() -> EncryptionPolicy:
    """A model gone wrong: it proposes AES-128 for everything."""
    return EncryptionPolicy(np.full(CELLS, AES_128, dtype=np.uint8))


def random_table() -> EncryptionPolicy:
    """A model gone badly wrong: any allowed suite in any cell, with no order in risk."""
    rng = np.random.default_rng(0)
    return EncryptionPolicy(rng.integers(0, len(ALLOWED_SUITES), CELLS).astype(np.uint8))


POLICIES = {
    "trained": trained,
    "weakest-everywhere": weakest_everywhere,
    "random": random_table,
    "strongest": strongest_policy,
}


@pytest.fixture(scope="module", params=list(POLICIES))
def policy(request) -> EncryptionPolicy:
    return POLICIES[request.param]()


# -- strategies: valid inputs, and anything at all ------------------------------------------------

absurd_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-1.0, -1e-300, 1e308, math.nan, math.inf, -math.inf, 0.0, 100.0, 1.0]),
    st.integers(min_value=-(10**30), max_value=10**30),
)
any_value = st.one_of(
    absurd_floats, st.text(max_size=5), st.none(), st.booleans(), st.lists(st.integers())
)

valid_inputs = st.builds(
    PolicyInputs,
    data_class=st.sampled_from(DataClass),
    payload_bytes=st.integers(min_value=0, max_value=2**40),
    role=st.sampled_from(ROLES),
    risk=st.floats(min_value=0.0, max_value=1.0),
    cpu_percent=st.floats(min_value=0.0, max_value=100.0),
    latency_ms=st.floats(min_value=0.0, max_value=1e9),
    traffic_rps=st.floats(min_value=0.0, max_value=1e9),
    constrained_device=st.booleans(),
)
# What a client could claim: the attacker-controlled fields take any value at all.
claimed_inputs = st.builds(
    PolicyInputs,
    data_class=st.sampled_from(DataClass),
    payload_bytes=st.one_of(st.integers(min_value=-(2**70), max_value=2**70), any_value),
    role=st.sampled_from(ROLES),
    risk=st.floats(min_value=0.0, max_value=1.0),
    cpu_percent=absurd_floats,
    latency_ms=absurd_floats,
    traffic_rps=absurd_floats,
    constrained_device=st.one_of(st.booleans(), any_value),
)
anything = st.builds(
    PolicyInputs,
    data_class=st.one_of(st.sampled_from(DataClass), any_value),
    payload_bytes=st.one_of(st.integers(), any_value),
    role=st.one_of(st.sampled_from(ROLES), any_value),
    risk=absurd_floats,
    cpu_percent=absurd_floats,
    latency_ms=absurd_floats,
    traffic_rps=absurd_floats,
    constrained_device=st.one_of(st.booleans(), any_value),
)
system_floors = st.one_of(st.none(), st.sampled_from(Suite))
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def reference_floor_level(inputs: PolicyInputs, system_floor: Suite | None) -> int:
    """The floor, recomputed from the documented table (docs/policy.md), not from the code's."""
    steps = {
        DataClass.ORDINARY: [(0.0, 1), (0.3, 2), (0.5, 3), (0.8, 4)],
        DataClass.SENSITIVE: [(0.0, 3), (0.5, 4)],
    }
    if input_problem(inputs) is not None:
        need = 4
    else:
        need = max(level for start, level in steps[inputs.data_class] if inputs.risk >= start)
    return max(need, system_floor.level if system_floor else 0)


# -- properties over the whole input space --------------------------------------------------------


@SETTINGS
@given(inputs=anything, system_floor=system_floors)
def test_no_input_at_all_gets_a_suite_off_the_allow_list_or_below_the_floor(
    policy, inputs, system_floor
):
    decision = policy.decide(inputs, system_floor=system_floor)
    assert decision.suite in ALLOWED_SUITES
    assert decision.suite.level >= reference_floor_level(inputs, system_floor)
    assert decision.suite.level >= decision.floor.level
    if input_problem(inputs) is not None:
        assert decision.suite is STRONGEST
        assert decision.source == "fallback"
    json.dumps(decision.as_log())  # every decision can be logged, whatever came in


@SETTINGS
@given(inputs=claimed_inputs, system_floor=system_floors)
def test_what_a_client_claims_never_lowers_a_decision_below_the_floor(policy, inputs, system_floor):
    decision = policy.decide(inputs, system_floor=system_floor)
    assert decision.suite.level >= reference_floor_level(inputs, system_floor)
    if inputs.data_class is DataClass.SENSITIVE:
        assert decision.suite.level >= Suite.AES_256_GCM.level


@SETTINGS
@given(
    inputs=valid_inputs,
    size=st.integers(min_value=0, max_value=2**40),
    latency=st.floats(min_value=0, max_value=1e9),
    traffic=st.floats(min_value=0, max_value=1e9),
    cpu=st.floats(min_value=0, max_value=100),
    system_floor=system_floors,
)
def test_the_floor_ignores_payload_size_latency_traffic_and_cpu(
    policy, inputs, size, latency, traffic, cpu, system_floor
):
    changed = PolicyInputs(
        inputs.data_class,
        size,
        inputs.role,
        risk=inputs.risk,
        cpu_percent=cpu,
        latency_ms=latency,
        traffic_rps=traffic,
        constrained_device=inputs.constrained_device,
    )
    first = policy.decide(inputs, system_floor=system_floor)
    second = policy.decide(changed, system_floor=system_floor)
    assert first.floor is second.floor
    assert min(first.suite.level, second.suite.level) >= first.floor.level


@SETTINGS
@given(
    inputs=valid_inputs,
    risks=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=6),
    system_floor=system_floors,
)
def test_higher_risk_never_yields_a_lower_level(policy, inputs, risks, system_floor):
    levels = []
    for risk in sorted(risks):
        x = PolicyInputs(
            inputs.data_class,
            inputs.payload_bytes,
            inputs.role,
            risk=risk,
            cpu_percent=inputs.cpu_percent,
            latency_ms=inputs.latency_ms,
            traffic_rps=inputs.traffic_rps,
            constrained_device=inputs.constrained_device,
        )
        levels.append(policy.decide(x, system_floor=system_floor).suite.level)
    assert levels == sorted(levels)


def test_risk_stays_monotone_at_every_cell_of_a_random_table():
    """Exhaustive, not sampled: every risk column of a table with no order at all."""
    codes, raised = monotone_in_risk(np.random.default_rng(1).integers(0, 6, CELLS).astype("u1"))
    levels = np.array([s.level for s in ALLOWED_SUITES])[codes.reshape(GRID_SHAPE)]
    assert (np.diff(levels, axis=3) >= 0).all()
    assert raised > 0


# -- floors, fallbacks, reasons ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_class", "risk", "suite"),
    [
        (DataClass.ORDINARY, 0.0, Suite.AES_128_GCM),
        (DataClass.ORDINARY, 0.29, Suite.AES_128_GCM),
        (DataClass.ORDINARY, 0.3, Suite.AES_192_GCM),
        (DataClass.ORDINARY, 0.5, Suite.AES_256_GCM),
        (DataClass.ORDINARY, 0.8, STRONGEST),
        (DataClass.SENSITIVE, 0.0, Suite.AES_256_GCM),
        (DataClass.SENSITIVE, 0.49, Suite.AES_256_GCM),
        (DataClass.SENSITIVE, 0.5, STRONGEST),
        (DataClass.SENSITIVE, 1.0, STRONGEST),
    ],
)
def test_the_requirement_follows_the_documented_steps(data_class, risk, suite):
    assert required_suite(data_class, risk) is suite


def test_sensitive_data_has_an_aes_256_class_floor_and_the_strongest_suite_is_level_4():
    assert CLASS_FLOOR[DataClass.SENSITIVE] is Suite.AES_256_GCM
    assert STRONGEST.level == max(s.level for s in ALLOWED_SUITES) == 4
    assert LEVEL_SUITE[4] is STRONGEST


def test_a_model_that_proposes_aes_128_is_raised_to_the_floor_and_says_so():
    decision = weakest_everywhere().decide(PolicyInputs(DataClass.SENSITIVE, 900, "doctor", 0.7))
    assert decision.suite is STRONGEST
    assert decision.source == "floor"
    assert decision.proposed is Suite.AES_128_GCM
    assert decision.reason == (
        "HYBRID-X25519-AES-256-GCM because: sensitive data, risk 0.70, "
        "model proposed AES-128-GCM, raised to the floor"
    )


def test_the_trained_policy_answers_with_its_own_choice_above_the_floor():
    decision = trained().decide(PolicyInputs(DataClass.SENSITIVE, 2000, "doctor", risk=0.1))
    assert decision.source == "model"
    assert decision.proposed is decision.suite
    assert decision.suite.level >= 3
    assert decision.reason.startswith(f"{decision.suite.label} because: sensitive data, risk 0.10")


def test_a_system_floor_raises_every_decision_and_names_itself_in_the_reason():
    inputs = PolicyInputs(DataClass.ORDINARY, 64, "patient", risk=0.0, constrained_device=True)
    decision = weakest_everywhere().decide(inputs, system_floor=Suite.RSA_3072_OAEP_AES_256_GCM)
    assert decision.suite is Suite.RSA_3072_OAEP_AES_256_GCM
    assert decision.floor is Suite.RSA_3072_OAEP_AES_256_GCM
    assert "system floor RSA-3072-OAEP-AES-256-GCM" in decision.reason


def test_a_system_floor_below_the_requirement_changes_nothing():
    inputs = PolicyInputs(DataClass.SENSITIVE, 64, "doctor", risk=0.9)
    decision = weakest_everywhere().decide(inputs, system_floor=Suite.AES_128_GCM)
    assert decision.floor is STRONGEST
    assert decision.suite is STRONGEST


def test_without_a_model_every_decision_is_the_strongest_suite():
    policy = strongest_policy()
    decision = policy.decide(PolicyInputs(DataClass.ORDINARY, 10, "admin"))
    assert (decision.suite, decision.source, decision.proposed) == (STRONGEST, "fallback", None)
    assert "no trained policy" in decision.reason
    assert policy.describe()["source"] == "fallback"


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("risk", math.nan, "risk outside [0, 1]"),
        ("risk", 1.5, "risk outside [0, 1]"),
        ("risk", -0.1, "risk outside [0, 1]"),
        ("cpu_percent", 250.0, "CPU use outside 0..100"),
        ("latency_ms", -3.0, "latency negative or not finite"),
        ("latency_ms", math.inf, "latency negative or not finite"),
        ("traffic_rps", math.nan, "traffic negative or not finite"),
        ("payload_bytes", -1, "negative payload size"),
        ("payload_bytes", 12.5, "payload size is not a whole number"),
        ("role", "root", "unknown role"),
        ("data_class", "sensitive", "unknown data class"),
        ("constrained_device", "yes", "constrained-device flag is not a boolean"),
        ("risk", "0.3", "malformed input"),
    ],
)
def test_an_out_of_range_or_malformed_input_gets_the_strongest_suite(field, value, problem):
    fields = {"data_class": DataClass.ORDINARY, "payload_bytes": 100, "role": "doctor"}
    fields[field] = value
    decision = weakest_everywhere().decide(PolicyInputs(**fields))
    assert decision.suite is STRONGEST
    assert decision.source == "fallback"
    assert (
        decision.reason == f"{STRONGEST.label} because: invalid input ({problem}), strongest suite"
    )


def test_a_system_floor_that_is_not_a_suite_is_treated_as_invalid_input():
    inputs = PolicyInputs(DataClass.ORDINARY, 100, "doctor")
    decision = trained().decide(inputs, system_floor="AES-128-GCM")  # type: ignore[arg-type]
    assert decision.suite is STRONGEST
    assert "system floor is not a suite" in decision.reason


def test_a_decision_log_is_json_and_does_not_echo_long_or_odd_inputs():
    odd = PolicyInputs(DataClass.ORDINARY, 100, "x" * 500 + "\n", risk=math.nan)
    log = strongest_policy().decide(odd).as_log()
    assert set(log) == {"inputs", "suite", "reason", "source", "floor", "proposed"}
    assert log["inputs"]["role"] == "<invalid>"
    assert log["inputs"]["risk"] == "nan"
    assert "xxxx" not in json.dumps(log)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (np.zeros(10, dtype=np.uint8), "shape"),
        (np.full(CELLS, len(ALLOWED_SUITES), dtype=np.uint8), "outside the allow-list"),
        (np.full(CELLS, -1, dtype=np.int16), "outside the allow-list"),
        (np.full(CELLS, 0.5), "outside the allow-list"),
    ],
)
def test_a_table_with_the_wrong_shape_or_codes_is_refused(table, message):
    with pytest.raises(ValueError, match=message):
        EncryptionPolicy(table)


# -- loading -------------------------------------------------------------------------------------


def test_loading_from_a_data_directory_without_a_model_gives_the_strongest_policy(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="carevault.security.policy"):
        policy = load_policy(tmp_path)
    assert not policy.has_model
    assert "no trained encryption policy" in caplog.text


def test_a_tampered_sealed_policy_is_refused_logged_and_replaced_by_the_strongest(tmp_path, caplog):
    from _policy_models import COSTS

    from carevault.modelstore.datadir import model_store
    from carevault.modelstore.store import PAYLOAD
    from carevault.security.policy_training import train

    report = train(
        model_store(tmp_path), seed=1, samples=500, held_out=50, n_estimators=2, costs=COSTS
    )
    assert load_policy(tmp_path).has_model
    payload = tmp_path / "models" / MODEL_NAME / f"v{report['version']}" / PAYLOAD
    data = bytearray(payload.read_bytes())
    data[-5] ^= 1
    payload.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="carevault.security.policy"):
        policy = load_policy(tmp_path)
    assert not policy.has_model
    assert "refused" in caplog.text
    assert policy.decide(PolicyInputs(DataClass.ORDINARY, 1, "doctor")).suite is STRONGEST
