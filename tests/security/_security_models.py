"""A small ensemble on a day of generated traffic, shared by the security layer's tests."""

from __future__ import annotations

import functools

from carevault.security.detectors import (
    AutoencoderDetector,
    IsolationForestDetector,
    OneClassSVMDetector,
    RandomForestDetector,
)
from carevault.security.ensemble import RiskEnsemble
from carevault.security.training import Dataset, build_dataset


def small_detectors(random_state: int = 0) -> list:
    return [
        ("iforest", IsolationForestDetector(n_estimators=40, random_state=random_state)),
        ("ocsvm", OneClassSVMDetector(n_components=60, random_state=random_state)),
        ("forest", RandomForestDetector(n_estimators=20, random_state=random_state)),
        ("autoencoder", AutoencoderDetector(max_iter=15, random_state=random_state)),
    ]


@functools.cache
def datasets() -> tuple[Dataset, Dataset]:
    return build_dataset(11, days=1.0, users=30), build_dataset(12, days=2.0, users=30)


@functools.cache
def ensemble(fusion: str = "stacking") -> RiskEnsemble:
    train, val = datasets()
    return RiskEnsemble(detectors=small_detectors(), fusion=fusion, random_state=0).fit(
        train.X, train.attack, X_val=val.X, y_val=val.attack, groups_val=val.groups
    )
