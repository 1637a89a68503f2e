"""The latency figures of the load scenarios: percentiles by linear interpolation."""

from __future__ import annotations

import pytest

from carevault.attacklab.scenarios._payloads import latency_summary, percentile


def test_the_median_of_an_odd_count_is_the_middle_value() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_percentiles_interpolate_between_neighbours() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 10.0


def test_no_values_have_no_percentile() -> None:
    assert percentile([], 95) is None
    assert latency_summary([]) == {"n": 0.0, "p50_ms": None, "p95_ms": None}


def test_a_percentage_outside_0_to_100_is_refused() -> None:
    with pytest.raises(ValueError, match="percentage"):
        percentile([1.0], 101)


def test_the_summary_is_in_milliseconds() -> None:
    summary = latency_summary([0.010, 0.020, 0.030])
    assert summary == {"n": 3.0, "p50_ms": 20.0, "p95_ms": 29.0}
