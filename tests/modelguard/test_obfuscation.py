"""Output policies: the label always survives, and each policy releases what it says."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from carevault.modelguard.obfuscation import (
    DEFAULT_SETTINGS,
    OutputPolicy,
    PolicySettings,
    obfuscate,
    reverse_sigmoid,
)

probabilities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
EDGES = [0.0, 1e-12, 0.05, 0.449, 0.45, 0.46, math.nextafter(0.5, 0.0), 0.5, 0.54, 0.55, 1.0]


@given(proba=probabilities, policy=st.sampled_from(list(OutputPolicy)), seed=st.integers(0, 99))
def test_every_policy_keeps_the_label_of_every_probability(
    proba: float, policy: OutputPolicy, seed: int
) -> None:
    out = obfuscate(policy, proba, rng=np.random.default_rng(seed))
    assert out.label == int(proba >= 0.5)
    assert out.policy is policy
    if out.confidence is not None:
        assert 0.0 <= out.confidence <= 1.0
        assert int(out.confidence >= 0.5) == out.label


@pytest.mark.parametrize("proba", EDGES)
@pytest.mark.parametrize("policy", list(OutputPolicy))
def test_the_label_survives_at_the_threshold_and_the_ends(
    proba: float, policy: OutputPolicy
) -> None:
    out = obfuscate(policy, proba, rng=np.random.default_rng(0))
    assert out.label == int(proba >= 0.5)
    if out.confidence is not None:
        assert int(out.confidence >= 0.5) == out.label


def test_full_releases_the_probability_and_label_only_releases_none() -> None:
    assert obfuscate(OutputPolicy.FULL, 0.8123).confidence == 0.8123
    assert obfuscate(OutputPolicy.LABEL_ONLY, 0.8123).confidence is None
    assert obfuscate(OutputPolicy.LABEL_ONLY, 0.2).label == 0


def test_rounding_releases_one_decimal_and_never_rounds_across_the_threshold() -> None:
    assert obfuscate(OutputPolicy.ROUNDED, 0.8123).confidence == 0.8
    assert obfuscate(OutputPolicy.ROUNDED, 0.03).confidence == 0.0
    # 0.46 rounds to 0.5, which would read as malignant: it is held just below the threshold.
    below = obfuscate(OutputPolicy.ROUNDED, 0.46)
    assert below.label == 0
    assert below.confidence is not None
    assert below.confidence < 0.5
    # 0.5 itself is malignant and stays 0.5.
    assert obfuscate(OutputPolicy.ROUNDED, 0.5).confidence == 0.5
    released = {obfuscate(OutputPolicy.ROUNDED, p).confidence for p in np.linspace(0, 1, 1001)}
    assert len(released) <= 12  # ten steps, both ends, and the held value below 0.5


def test_two_decimals_round_finer() -> None:
    settings = PolicySettings(decimals=2)
    assert obfuscate(OutputPolicy.ROUNDED, 0.8123, settings=settings).confidence == 0.81


def test_noise_needs_a_generator_and_moves_the_confidence() -> None:
    with pytest.raises(ValueError, match="random generator"):
        obfuscate(OutputPolicy.NOISY, 0.7)
    rng = np.random.default_rng(1)
    released = [obfuscate(OutputPolicy.NOISY, 0.7, rng=rng).confidence for _ in range(200)]
    assert all(c is not None for c in released)
    values = np.asarray(released, dtype=np.float64)
    assert np.std(values) > 0.05  # the default scale is 0.1, clamped on the malignant side
    assert abs(float(np.mean(values)) - 0.7) < 0.05


def test_reverse_sigmoid_follows_the_published_formula() -> None:
    p, beta, gamma = 0.9, DEFAULT_SETTINGS.beta, DEFAULT_SETTINGS.gamma
    logit = math.log(p / (1 - p))
    expected = p - beta * (1 / (1 + math.exp(-gamma * logit)) - 0.5)
    assert reverse_sigmoid(p, beta, gamma) == pytest.approx(expected)
    assert obfuscate(OutputPolicy.REVERSE_SIGMOID, p).confidence == pytest.approx(expected)
    assert reverse_sigmoid(0.5, beta, gamma) == pytest.approx(0.5)


def test_reverse_sigmoid_hides_the_score_from_an_equation_solver() -> None:
    """The logit of the released value is not an affine function of the model's score, so
    solving a linear system on it does not give back the weights."""
    scores = np.linspace(-6, 6, 25)
    probas = 1 / (1 + np.exp(-scores))
    released = [obfuscate(OutputPolicy.REVERSE_SIGMOID, float(p)).confidence for p in probas]
    logits = np.log(np.asarray(released) / (1 - np.asarray(released)))
    slope, intercept = np.polyfit(scores, logits, 1)
    residual = logits - (slope * scores + intercept)
    assert float(np.max(np.abs(residual))) > 0.5
    # Full confidences are exactly affine (the identity) in the score.
    full = [obfuscate(OutputPolicy.FULL, float(p)).confidence for p in probas]
    assert np.allclose(np.log(np.asarray(full) / (1 - np.asarray(full))), scores)


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan")])
def test_a_probability_outside_zero_one_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        obfuscate(OutputPolicy.FULL, bad)


def test_a_policy_must_be_an_output_policy() -> None:
    with pytest.raises(TypeError, match="OutputPolicy"):
        obfuscate("full", 0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decimals": 7}, "decimals"),
        ({"decimals": -1}, "decimals"),
        ({"noise_scale": 0.0}, "noise scale"),
        ({"beta": 1.0}, "reverse sigmoid"),
        ({"beta": 0.5, "gamma": 2.5}, "reverse sigmoid"),
        ({"gamma": 0.0}, "reverse sigmoid"),
    ],
)
def test_settings_that_could_flip_a_label_are_refused(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PolicySettings(**kwargs)  # type: ignore[arg-type]
