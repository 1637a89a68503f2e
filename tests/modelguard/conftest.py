"""The logistic diagnosis model as the homomorphic and multi-party tests serve it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sklearn.pipeline import Pipeline

from carevault.modelguard.dataset import Split, load_split
from carevault.modelguard.models import LOGISTIC, LinearForm, fit, linear_form


@dataclass(frozen=True)
class Served:
    split: Split
    pipeline: Pipeline
    model: LinearForm


@pytest.fixture(scope="module")
def served() -> Served:
    split = load_split()
    pipeline = fit(LOGISTIC, split.X_train, split.y_train)
    return Served(split, pipeline, linear_form(pipeline))
