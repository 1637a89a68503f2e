"""The four detectors of the risk ensemble, all scikit-learn-style estimators (parameters in
``__init__`` only, ``fit`` returns self, learned state ends in ``_``, ``random_state``
everywhere) with one score orientation: higher is more anomalous.

* :class:`IsolationForestDetector`, :class:`OneClassSVMDetector` and
  :class:`AutoencoderDetector` learn benign traffic only and flag what is unlike it;
* :class:`RandomForestDetector` learns labelled attacks and flags what is like them.
"""

from __future__ import annotations

from typing import Any

from ._base import Detector, as_matrix, as_row
from .autoencoder import AutoencoderDetector
from .forest import RandomForestDetector, attack_mask
from .iforest import IsolationForestDetector
from .ocsvm import OneClassSVMDetector

DETECTOR_NAMES = ("iforest", "ocsvm", "forest", "autoencoder")


def default_detectors(
    random_state: int | None = 0, n_jobs: int | None = None
) -> list[tuple[str, Any]]:
    """The ensemble's members with the parameters the budgets were measured with."""
    return [
        ("iforest", IsolationForestDetector(random_state=random_state)),
        ("ocsvm", OneClassSVMDetector(random_state=random_state)),
        ("forest", RandomForestDetector(n_jobs=n_jobs, random_state=random_state)),
        ("autoencoder", AutoencoderDetector(random_state=random_state)),
    ]


__all__ = [
    "DETECTOR_NAMES",
    "AutoencoderDetector",
    "Detector",
    "IsolationForestDetector",
    "OneClassSVMDetector",
    "RandomForestDetector",
    "as_matrix",
    "as_row",
    "attack_mask",
    "default_detectors",
]
