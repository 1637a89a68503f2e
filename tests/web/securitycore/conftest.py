"""Every security-layer test starts from empty throttle counters, a fresh scorer, no host
sampling and no batch scoring (so every event is scored where the test can see it)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from security_helpers import FakeClock

from carevault.web.accounts import throttle
from carevault.web.securitycore import engine


@pytest.fixture(autouse=True)
def _quiet_and_fresh(settings):
    settings.SECURITY_TELEMETRY_SECONDS = 0
    settings.SECURITY_SYNC_BUDGET_MS = 60_000
    cache.clear()
    engine.reset_runtime()
    yield
    engine.reset_runtime()
    cache.clear()


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(throttle, "clock", fake)
    return fake
