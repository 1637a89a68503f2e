"""The cost model: a line per suite fitted to encrypt + decrypt timings taken through a real
Keyring. No timing is asserted (the machine is shared); the shape and the fit are."""

from __future__ import annotations

import pytest

from carevault.crypto import Suite
from carevault.security.policy_costs import CostModel, fit_line, measure_costs


def test_a_line_is_recovered_from_exact_timings():
    sizes = [16, 256, 4096, 65536, 1 << 20]
    per_call, per_byte = fit_line(sizes, [10e-6 + 1e-9 * n for n in sizes])
    assert per_call == pytest.approx(10e-6, rel=1e-6)
    assert per_byte == pytest.approx(1e-9, rel=1e-6)


def test_a_fitted_line_never_has_a_negative_or_zero_part():
    # Timings that fall with size (noise) would give a negative slope: clamped to 0.
    per_call, per_byte = fit_line([16, 1 << 20], [20e-6, 10e-6])
    assert per_byte == 0.0
    assert per_call > 0


@pytest.mark.parametrize(
    ("sizes", "seconds"),
    [([16], [1e-6]), ([16, 32], [1e-6]), ([16, 32], [1e-6, 0.0])],
)
def test_a_line_needs_two_positive_timings(sizes, seconds):
    with pytest.raises(ValueError, match="two positive timings"):
        fit_line(sizes, seconds)


def test_measuring_times_every_suite_and_size_through_a_keyring():
    suites = [Suite.AES_128_GCM, Suite.HYBRID_X25519_AES_256_GCM]
    model = measure_costs(suites, sizes=[16, 4096], rounds=1)
    assert list(model.costs) == suites
    for suite in suites:
        cost = model.costs[suite]
        assert set(cost.measured_s) == {16, 4096}
        assert all(t > 0 for t in cost.measured_s.values())
        assert cost.per_call_s > 0
        assert model.seconds(suite, 4096) == pytest.approx(cost.per_call_s + 4096 * cost.per_byte_s)
    assert model.measured_at
    described = model.as_dict()
    assert [s["suite"] for s in described["suites"]] == [s.label for s in suites]


def test_measuring_with_nothing_to_measure_is_refused():
    with pytest.raises(ValueError, match="at least one suite"):
        measure_costs([], rounds=1)
    with pytest.raises(ValueError, match="at least one suite"):
        measure_costs([Suite.AES_128_GCM], sizes=[16], rounds=1)


def test_a_given_cost_model_says_where_it_came_from():
    model = CostModel.from_lines({Suite.AES_256_GCM: (1e-5, 1e-9)})
    assert model.as_dict()["machine"] == "given"
    assert model.seconds(Suite.AES_256_GCM, 1000) == pytest.approx(1e-5 + 1e-6)
