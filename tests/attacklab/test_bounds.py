"""A scenario's bounds: what a run may spend, checked when they are declared."""

from __future__ import annotations

import pytest

from carevault.attacklab.bounds import Bounds


@pytest.mark.parametrize(("requests", "seconds"), [(-1, 10.0), (10, 0.0), (10, -1.0)])
def test_bounds_refuse_negative_requests_and_non_positive_seconds(requests, seconds):
    with pytest.raises(ValueError, match="bounds must be"):
        Bounds(requests, seconds)


def test_zero_requests_is_a_valid_bound():
    assert Bounds(0, 1.0).requests == 0
