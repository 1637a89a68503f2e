from __future__ import annotations

import pytest
from diagnosis_helpers import seal_models, use

from carevault.web.diagnosis import serving


@pytest.fixture(scope="session")
def diagnosis_models(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("diagnosis-models")
    seal_models(data_dir)
    return data_dir


@pytest.fixture
def served(settings, diagnosis_models):
    """The sealed models served, with a fresh guard (budgets and monitor) for each test."""
    use(settings, diagnosis_models)
    yield diagnosis_models
    serving.reset()
