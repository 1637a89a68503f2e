"""QueryGuard: budget, monitor and output policy per client kind in one thread-safe object."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from carevault.modelguard.budgets import BudgetExceeded, BudgetLimits
from carevault.modelguard.dataset import load_split
from carevault.modelguard.extraction import ClientState, ExtractionMonitor
from carevault.modelguard.guard import (
    DEFAULT_CONFIG,
    ClientKind,
    QueryGuard,
    ServingConfig,
)
from carevault.modelguard.obfuscation import OutputPolicy

SPLIT = load_split()
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def guard() -> QueryGuard:
    return QueryGuard(ExtractionMonitor(SPLIT.X_train))


def test_doctors_get_a_rounded_confidence_and_api_clients_the_label_only(
    guard: QueryGuard,
) -> None:
    assert DEFAULT_CONFIG[ClientKind.DOCTOR_UI].policy is OutputPolicy.ROUNDED
    assert DEFAULT_CONFIG[ClientKind.API].policy is OutputPolicy.LABEL_ONLY
    doctor = guard.release(0.8731, 1, ClientKind.DOCTOR_UI)
    assert (doctor.label, doctor.confidence) == (1, 0.9)
    api = guard.release(0.8731, 1, ClientKind.API)
    assert (api.label, api.confidence) == (1, None)
    assert guard.release(0.12, 0, ClientKind.API).label == 0


def test_full_confidences_are_never_served_to_api_clients() -> None:
    config = dict(DEFAULT_CONFIG)
    config[ClientKind.API] = ServingConfig(OutputPolicy.FULL, BudgetLimits())
    with pytest.raises(ValueError, match="never get full confidences"):
        QueryGuard(ExtractionMonitor(SPLIT.X_train), config)
    assert all(c.policy is not OutputPolicy.FULL for c in DEFAULT_CONFIG.values())


def test_a_configuration_must_cover_every_kind_and_noise_needs_a_generator() -> None:
    monitor = ExtractionMonitor(SPLIT.X_train)
    with pytest.raises(ValueError, match="no serving configuration"):
        QueryGuard(monitor, {ClientKind.API: DEFAULT_CONFIG[ClientKind.API]})
    noisy = dict(DEFAULT_CONFIG)
    noisy[ClientKind.DOCTOR_UI] = ServingConfig(OutputPolicy.NOISY, BudgetLimits())
    with pytest.raises(ValueError, match="random generator"):
        QueryGuard(monitor, noisy)
    guard = QueryGuard(monitor, noisy, rng=np.random.default_rng(0))
    out = guard.release(0.7, 1, ClientKind.DOCTOR_UI)
    assert out.confidence is not None
    assert out.confidence >= 0.5


def test_the_label_must_match_the_probability(guard: QueryGuard) -> None:
    with pytest.raises(ValueError, match="label does not match"):
        guard.release(0.8, 0, ClientKind.DOCTOR_UI)
    with pytest.raises(TypeError, match="ClientKind"):
        guard.release(0.8, 1, "api")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ClientKind"):
        guard.check("c", SPLIT.X_test[0], T0, "api")  # type: ignore[arg-type]


def test_an_api_client_is_refused_after_its_hourly_budget_but_not_cut_off(
    guard: QueryGuard,
) -> None:
    limit = DEFAULT_CONFIG[ClientKind.API].limits.per_hour
    for i in range(limit):
        assert guard.check("api-1", SPLIT.X_test[i], T0 + timedelta(minutes=i)).allowed
    refused = guard.check("api-1", SPLIT.X_test[limit], T0 + timedelta(minutes=limit))
    assert not refused.allowed
    assert not refused.cut_off
    assert refused.retry_after == timedelta(minutes=60 - limit)
    assert "per hour" in refused.reason
    # A doctor's budget is larger and separate.
    for i in range(limit + 1):
        assert guard.check(
            "doctor-1", SPLIT.X_test[i], T0 + timedelta(minutes=i), ClientKind.DOCTOR_UI
        ).allowed


def test_an_extraction_alarm_cuts_the_client_off_and_is_reported_once(guard: QueryGuard) -> None:
    rng = np.random.default_rng(0)
    lo, hi = SPLIT.X_train.min(axis=0), SPLIT.X_train.max(axis=0)
    verdicts = [
        guard.check("prober", rng.uniform(lo, hi), T0 + timedelta(seconds=s)) for s in range(8)
    ]
    alarms = [v for v in verdicts if v.newly_cut_off]
    assert len(alarms) == 1
    assert alarms[0].cut_off
    assert not alarms[0].allowed
    after = guard.check("prober", SPLIT.X_test[0], T0 + timedelta(minutes=5))
    assert (after.allowed, after.cut_off, after.newly_cut_off) == (False, True, False)
    assert after.retry_after is None
    # Another client is unaffected; an operator's clear lets the prober back in.
    assert guard.check("other", SPLIT.X_test[0], T0).allowed
    guard.clear("prober")
    assert guard.check("prober", SPLIT.X_test[1], T0 + timedelta(minutes=6)).allowed


def _client(
    guard: QueryGuard, client_id: str, worker: int, start: threading.Barrier, out: list[bool]
) -> None:
    start.wait()
    for j in range(10):
        out.append(guard.check(client_id, SPLIT.X_train[worker * 10 + j], T0).allowed)


def test_concurrent_queries_never_exceed_the_budget(guard: QueryGuard) -> None:
    """Probabilistic by nature: with the lock taken out, 5 of 5 runs of this test failed."""
    # Switch threads as often as the interpreter allows, so an unguarded check-then-charge
    # would let more than the budget through (or trip over the shared deque).
    limit = DEFAULT_CONFIG[ClientKind.API].limits.per_hour
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for round_ in range(20):
            allowed: list[bool] = []
            start = threading.Barrier(8)
            threads = [
                threading.Thread(target=_client, args=(guard, f"api-{round_}", w, start, allowed))
                for w in range(8)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(allowed) == 80
            assert sum(allowed) == limit
    finally:
        sys.setswitchinterval(interval)


def test_blind_queries_share_the_clients_budget_and_a_cut_off_client_gets_none(
    guard: QueryGuard,
) -> None:
    limit = guard.config[ClientKind.API].limits.per_hour
    guard.charge_blind("api:7", limit - 1, T0)  # encrypted patients the monitor cannot see
    assert guard.check("api:7", SPLIT.X_test[0], T0, ClientKind.API).allowed  # the last one
    with pytest.raises(BudgetExceeded):
        guard.charge_blind("api:7", 1, T0)
    guard.monitor.store.update("api:8", lambda _: (ClientState(alert_reason="cut off"), None))
    with pytest.raises(BudgetExceeded):
        guard.charge_blind("api:8", 1, T0)
