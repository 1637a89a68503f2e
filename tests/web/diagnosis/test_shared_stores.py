"""The diagnosis guard's shared stores: budgets exact through the store, a monitor history
sealed at rest (the features of the cases queried never sit readable in the store), and a
history that does not authenticate dropped, not trusted."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.core.cache import caches

from carevault.modelguard.budgets import BudgetExceeded, BudgetLimits, QueryBudget
from carevault.modelguard.extraction import ClientState
from carevault.web.diagnosis.shared_stores import SharedBudgetStore, SharedMonitorStore

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def test_two_budgets_on_one_shared_store_count_into_one_window() -> None:
    # Two processes' guards, each with its own QueryBudget object, one store.
    first = QueryBudget(BudgetLimits(3, 10), SharedBudgetStore(), name="api")
    second = QueryBudget(BudgetLimits(3, 10), SharedBudgetStore(), name="api")
    first.charge("api:1", T0)
    second.charge("api:1", T0 + dt.timedelta(seconds=1))
    first.charge("api:1", T0 + dt.timedelta(seconds=2))
    with pytest.raises(BudgetExceeded) as refused:
        second.charge("api:1", T0 + dt.timedelta(seconds=3))
    assert refused.value.window == "hour"
    assert second.used("api:1", T0 + dt.timedelta(seconds=3)) == 3


def test_a_batch_is_charged_all_or_nothing() -> None:
    budget = QueryBudget(BudgetLimits(5, 5), SharedBudgetStore(), name="he")
    budget.charge("c", T0, count=4)
    with pytest.raises(BudgetExceeded):
        budget.charge("c", T0, count=2)
    assert budget.used("c", T0) == 4


def sealed_value(store: SharedMonitorStore, client: str) -> object:
    return caches["default"].get(store._key(client))


def test_a_monitor_history_is_sealed_in_the_store() -> None:
    store = SharedMonitorStore()
    features = np.array([17.99, 10.38, 122.8])
    store.update("api:7", lambda state: (ClientState(growing=[features], queries=1), None))
    stored = sealed_value(store, "api:7")
    assert isinstance(stored, str)
    assert "17.99" not in stored
    assert "growing" not in stored
    again = store.get("api:7")
    assert again is not None
    assert again.queries == 1
    np.testing.assert_allclose(again.growing[0], features)


def test_a_history_that_does_not_authenticate_is_dropped() -> None:
    store = SharedMonitorStore()
    store.update("api:7", lambda state: (ClientState(queries=3, alert_reason="x"), None))
    other = SharedMonitorStore()
    other.update("api:8", lambda state: (ClientState(queries=1), None))
    # api:8's sealed history copied under api:7's key: bound to its own key, it does not open.
    caches["default"].set(store._key("api:7"), sealed_value(other, "api:8"), 60)
    assert store.get("api:7") is None


def test_clearing_a_history_reaches_every_store_object() -> None:
    SharedMonitorStore().update("api:9", lambda state: (ClientState(alert_reason="cut"), None))
    SharedMonitorStore().clear("api:9")
    assert SharedMonitorStore().get("api:9") is None
