"""What a diagnosis releases to a client: the label always, and a confidence only as much as
the client's output policy allows (issue 7, "Output obfuscation and extraction defence").

Every policy keeps the label the full model gives (``P(malignant) >= 0.5``), so a legitimate
user loses no accuracy; what changes is how much the released confidence tells an attacker who
solves equations for the weights (Tramèr et al. 2016). Reverse sigmoid follows Lee et al. 2019:
``y' = y - beta * (sigmoid(gamma * logit(y)) - 1/2)``; with ``0 < beta * max(1, gamma) < 1``
the label provably survives (``sigmoid - 1/2`` is concave on the positive side, so
``beta * g(gamma * l) < g(l)``), while ``logit(y')`` is no longer the model's score.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np


class OutputPolicy(enum.Enum):
    FULL = "full"
    LABEL_ONLY = "label-only"
    ROUNDED = "rounded"
    NOISY = "noisy"
    REVERSE_SIGMOID = "reverse-sigmoid"


@dataclass(frozen=True)
class ObfuscatedOutput:
    """The label (1 malignant) and the released P(malignant), ``None`` when none is released."""

    label: int
    confidence: float | None
    policy: OutputPolicy


@dataclass(frozen=True)
class PolicySettings:
    decimals: int = 1  # ROUNDED: one decimal, ten confidence levels
    noise_scale: float = 0.1  # NOISY: standard deviation of the Gaussian added to P
    beta: float = 0.7  # REVERSE_SIGMOID strength
    gamma: float = 0.3  # REVERSE_SIGMOID slope of the inner sigmoid

    def __post_init__(self) -> None:
        if not 0 <= self.decimals <= 6:
            raise ValueError(f"decimals must be between 0 and 6, got {self.decimals}")
        if not self.noise_scale > 0:
            raise ValueError(f"noise scale must be positive, got {self.noise_scale}")
        if not (self.gamma > 0 and 0 < self.beta * max(1.0, self.gamma) < 1):
            raise ValueError("reverse sigmoid needs gamma > 0 and 0 < beta * max(1, gamma) < 1")


DEFAULT_SETTINGS = PolicySettings()
# The largest released confidence strictly on the benign side of the threshold.
_BELOW_HALF = math.nextafter(0.5, 0.0)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _logit(p: float) -> float:
    p = min(max(p, 1e-15), 1 - 1e-15)
    return math.log(p / (1 - p))


def _keep_side(value: float, label: int) -> float:
    """Clamp a perturbed confidence to the label's side of 0.5 (and to [0, 1])."""
    return min(max(value, 0.5), 1.0) if label == 1 else min(max(value, 0.0), _BELOW_HALF)


def reverse_sigmoid(proba: float, beta: float, gamma: float) -> float:
    l_ = _logit(proba)
    return proba - beta * (_sigmoid(gamma * l_) - 0.5)


def obfuscate(
    policy: OutputPolicy,
    proba: float,
    *,
    rng: np.random.Generator | None = None,
    settings: PolicySettings = DEFAULT_SETTINGS,
) -> ObfuscatedOutput:
    """Release the model's P(malignant) ``proba`` under ``policy``; the label is never changed."""
    if not isinstance(policy, OutputPolicy):
        raise TypeError(f"policy must be an OutputPolicy, got {type(policy).__name__}")
    proba = float(proba)
    if not 0.0 <= proba <= 1.0:  # also refuses NaN
        raise ValueError("probability must be between 0 and 1")
    label = int(proba >= 0.5)
    confidence: float | None
    if policy is OutputPolicy.FULL:
        confidence = proba
    elif policy is OutputPolicy.LABEL_ONLY:
        confidence = None
    elif policy is OutputPolicy.ROUNDED:
        confidence = _keep_side(round(proba, settings.decimals), label)
    elif policy is OutputPolicy.NOISY:
        if rng is None:
            raise ValueError("the noisy policy needs a random generator (rng=)")
        confidence = _keep_side(proba + float(rng.normal(0.0, settings.noise_scale)), label)
    else:
        confidence = _keep_side(reverse_sigmoid(proba, settings.beta, settings.gamma), label)
    return ObfuscatedOutput(label, confidence, policy)
