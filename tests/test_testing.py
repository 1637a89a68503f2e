"""The test run's own isolation."""

from __future__ import annotations

import os

from django.conf import settings


def test_the_suite_runs_in_its_own_data_directory() -> None:
    assert os.environ["CAREVAULT_DATA_DIR"] == str(settings.DATA_DIR)
    assert "carevault-test-" in str(settings.DATA_DIR)
