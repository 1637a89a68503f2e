"""Every security-layer test starts from empty throttle counters (tests/web/conftest.py), a
fresh scorer, no host sampling and no batch scoring (so every event is scored where the test can
see it)."""

from __future__ import annotations

import pytest
from security_helpers import FakeClock

from carevault.web.login import throttle
from carevault.web.securitycore.runtime import reset_runtime


@pytest.fixture(autouse=True)
def _quiet_and_fresh(settings):
    settings.SECURITY_TELEMETRY_SECONDS = 0
    settings.SECURITY_SYNC_BUDGET_MS = 60_000
    # The shared store is emptied by tests/web/conftest.py (only for tests that use a database:
    # the store is a table unless REDIS_URL is set).
    reset_runtime()
    yield
    reset_runtime()


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(throttle, "clock", fake)
    return fake
