"""Every security-layer test starts from empty throttle counters (tests/web/conftest.py), a
fresh scorer, no host sampling and no batch scoring (so every event is scored where the test can
see it)."""

from __future__ import annotations

import pytest
from security_helpers import clock, fresh_security

__all__ = ["clock", "fresh_security"]


@pytest.fixture(autouse=True)
def _fresh(fresh_security: None) -> None:
    """fresh_security for every test here."""
