"""Per-client query budgets: sliding hourly and daily windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carevault.modelguard.budgets import BudgetExceeded, BudgetLimits, QueryBudget

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_it_refuses_the_query_after_the_hourly_budget_within_the_hour() -> None:
    budget = QueryBudget(BudgetLimits(per_hour=5, per_day=50))
    for i in range(5):
        charge = budget.charge("api-1", T0 + timedelta(minutes=i))
        assert charge.used_hour == i + 1
    with pytest.raises(BudgetExceeded) as refused:
        budget.charge("api-1", T0 + timedelta(minutes=10))
    assert refused.value.window == "hour"
    assert refused.value.limit == 5
    # The oldest query (at T0) leaves the window at T0 + 1 h.
    assert refused.value.retry_after == timedelta(minutes=50)
    assert "retry in" in str(refused.value)


def test_a_refused_query_is_not_counted_and_the_window_slides_on() -> None:
    budget = QueryBudget(BudgetLimits(per_hour=2, per_day=50))
    budget.charge("api-1", T0)
    budget.charge("api-1", T0 + timedelta(minutes=30))
    for minute in (31, 40, 59):
        with pytest.raises(BudgetExceeded):
            budget.charge("api-1", T0 + timedelta(minutes=minute))
    assert budget.used("api-1", T0 + timedelta(minutes=59)) == 2
    # One hour after the first query, one slot is free again (and only one).
    assert budget.charge("api-1", T0 + timedelta(hours=1)).used_hour == 2
    with pytest.raises(BudgetExceeded):
        budget.charge("api-1", T0 + timedelta(hours=1, seconds=1))


def test_it_refuses_the_query_after_the_daily_budget() -> None:
    budget = QueryBudget(BudgetLimits(per_hour=3, per_day=6))
    now = T0
    for _ in range(6):
        budget.charge("doctor-1", now)
        now += timedelta(minutes=25)  # never three in one hour
    with pytest.raises(BudgetExceeded) as refused:
        budget.charge("doctor-1", now)
    assert refused.value.window == "day"
    assert budget.charge("doctor-1", T0 + timedelta(days=1)).used_day == 6


def test_clients_have_their_own_budgets() -> None:
    budget = QueryBudget(BudgetLimits(per_hour=1, per_day=1))
    budget.charge("a", T0)
    with pytest.raises(BudgetExceeded):
        budget.charge("a", T0)
    assert budget.charge("b", T0).used_day == 1
    assert budget.used("c", T0) == 0


def test_bad_client_ids_naive_times_and_time_going_backwards_are_refused() -> None:
    budget = QueryBudget()
    with pytest.raises(ValueError, match="client id"):
        budget.charge("  ", T0)
    with pytest.raises(ValueError, match="timezone"):
        budget.charge("a", datetime(2026, 3, 2, 9, 0))
    budget.charge("a", T0)
    with pytest.raises(ValueError, match="backwards"):
        budget.charge("a", T0 - timedelta(seconds=1))


@pytest.mark.parametrize(("per_hour", "per_day"), [(0, 10), (5, 0), (11, 10)])
def test_budget_limits_that_make_no_sense_are_refused(per_hour: int, per_day: int) -> None:
    with pytest.raises(ValueError, match="budget"):
        BudgetLimits(per_hour=per_hour, per_day=per_day)
