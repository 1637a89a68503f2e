"""Clinic fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _static_root(settings, tmp_path):
    """WhiteNoise warns (an error under ``filterwarnings = error``) when STATIC_ROOT does not
    exist, and a test run has no business creating one in the data directory. (The labs tests
    do the same; it belongs in tests/web/conftest.py.)"""
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STATIC_ROOT.mkdir()
