"""What scoring an event produces, and the contract between the security layer and whoever acts
on it (the web layer implements :class:`ResponseSink`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .events import Event


@dataclass(frozen=True)
class Assessment:
    """The risk of one event in [0, 1], and why."""

    risk: float
    # Calibrated score of each detector in [0, 1] (e.g. {"iforest": 0.93, ...}).
    detectors: dict[str, float] = field(default_factory=dict)
    # The features that pushed the score most, with their values (name -> value).
    features: dict[str, float] = field(default_factory=dict)
    # Hard rules that fired (e.g. "aead_failure_at_rest"); each sets a floor under the risk
    # (an AEAD failure on stored data: 1; see carevault.security.rules).
    rules: tuple[str, ...] = ()


class RiskScorer(Protocol):
    def assess(self, event: Event) -> Assessment: ...
