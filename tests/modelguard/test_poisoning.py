"""Poison screening of retraining data, measured on injected poison in the real data set.

The trusted base is one half of a training split, the new batch the other half with poison
injected, so every figure below is precision / recall on rows known to be poison.
"""

from __future__ import annotations

import numpy as np
import pytest

from carevault.modelguard import models, poisoning
from carevault.modelguard.dataset import Split, load_split

Halves = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], Split]


def _halves(seed: int) -> Halves:
    split = load_split(seed)
    n = len(split.y_train) // 2  # the split is already shuffled and stratified
    trusted = (split.X_train[:n], split.y_train[:n])
    new = (split.X_train[n:], split.y_train[n:])
    return trusted, new, split


@pytest.fixture(scope="module")
def halves() -> Halves:
    return _halves(0)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_clean_batch_keeps_almost_every_row(seed: int) -> None:
    trusted, new, _ = _halves(seed)
    report = poisoning.screen(*new, trusted)
    assert report.kept.mean() >= 0.95


def test_it_finds_injected_label_flips(halves: Halves) -> None:
    trusted, new, _ = halves
    batch = poisoning.inject(*new, "label_flip", 0.2, random_state=0)
    report = poisoning.screen(batch.X, batch.y, trusted)
    precision, recall = poisoning.precision_recall(report, batch.is_poison)
    assert recall >= 0.9
    assert precision >= 0.85


def test_it_finds_feature_space_outliers(halves: Halves) -> None:
    trusted, new, _ = halves
    batch = poisoning.inject(*new, "outlier", 0.1, random_state=0)
    report = poisoning.screen(batch.X, batch.y, trusted)
    precision, recall = poisoning.precision_recall(report, batch.is_poison)
    assert recall >= 0.95
    assert precision >= 0.75


def test_the_trusted_model_check_finds_most_of_the_targeted_boundary_poison(
    halves: Halves,
) -> None:
    """The hard case: relabelled malignant cases near the boundary look like ordinary rows to
    the distance checks; the model fitted on trusted rows doubts their benign label."""
    trusted, new, _ = halves
    batch = poisoning.inject(*new, "boundary", 0.2, random_state=0)
    report = poisoning.screen(batch.X, batch.y, trusted)
    precision, recall = poisoning.precision_recall(report, batch.is_poison)
    assert recall >= 0.75
    assert precision >= 0.85
    without = poisoning.screen(
        batch.X, batch.y, trusted, poisoning.ScreenConfig(min_label_probability=0.0)
    )
    _, recall_without = poisoning.precision_recall(without, batch.is_poison)
    assert recall >= recall_without + 0.15
    assert poisoning.TRUSTED_MODEL not in {n for r in without.reasons.values() for n in r}


def test_screening_recovers_the_accuracy_label_flips_cost(halves: Halves) -> None:
    trusted, new, split = halves
    batch = poisoning.inject(*new, "label_flip", 0.2, random_state=0)
    report = poisoning.screen(batch.X, batch.y, trusted)

    def accuracy(X: np.ndarray, y: np.ndarray) -> float:
        model = models.fit(
            models.LOGISTIC, np.vstack([trusted[0], X]), np.concatenate([trusted[1], y])
        )
        return float(np.mean(model.predict(split.X_test) == split.y_test))

    assert accuracy(batch.X[report.kept], batch.y[report.kept]) >= accuracy(batch.X, batch.y) + 0.02


def test_every_flagged_row_says_which_checks_fired(halves: Halves) -> None:
    trusted, new, _ = halves
    batch = poisoning.inject(*new, "outlier", 0.1, random_state=3)
    report = poisoning.screen(batch.X, batch.y, trusted)
    assert sorted(report.reasons) == report.flagged.tolist()
    checks = set(poisoning.CHECKS)
    assert all(reasons and set(reasons) <= checks for reasons in report.reasons.values())
    assert poisoning.MAHALANOBIS in {name for r in report.reasons.values() for name in r}


def test_label_flips_change_exactly_the_marked_labels(halves: Halves) -> None:
    _, (X, y), _ = halves
    batch = poisoning.inject(X, y, "label_flip", 0.1, random_state=1)
    assert batch.is_poison.sum() == round(0.1 * len(y))
    np.testing.assert_array_equal(batch.X, X)
    np.testing.assert_array_equal(batch.y != y, batch.is_poison)


@pytest.mark.parametrize("kind", ["outlier", "boundary"])
def test_added_poison_is_labelled_benign_and_the_real_rows_are_untouched(
    halves: Halves, kind: str
) -> None:
    _, (X, y), _ = halves
    batch = poisoning.inject(X, y, kind, 0.1, random_state=1)
    count = round(0.1 * len(y))
    assert len(batch.y) == len(y) + count
    assert batch.is_poison.sum() == count
    assert np.all(batch.y[batch.is_poison] == 0)
    clean = batch.X[~batch.is_poison]
    np.testing.assert_array_equal(np.sort(clean, axis=0), np.sort(X, axis=0))


def test_a_zero_rate_injects_nothing(halves: Halves) -> None:
    _, (X, y), _ = halves
    assert not poisoning.inject(X, y, "boundary", 0.0).is_poison.any()


def test_it_refuses_bad_poison_settings(halves: Halves) -> None:
    _, (X, y), _ = halves
    with pytest.raises(ValueError, match="unknown poison kind"):
        poisoning.inject(X, y, "backdoor", 0.1)
    with pytest.raises(ValueError, match="poison rate"):
        poisoning.inject(X, y, "label_flip", 1.0)
    with pytest.raises(ValueError, match="poison rate"):
        poisoning.inject(X, y, "label_flip", float("nan"))


def test_an_empty_batch_is_screened_to_an_empty_report(halves: Halves) -> None:
    trusted, (X, y), _ = halves
    report = poisoning.screen(X[:0], y[:0], trusted)
    assert report.kept.shape == (0,)
    assert report.reasons == {}


def test_it_refuses_bad_data_to_screen(halves: Halves) -> None:
    trusted, (X, y), _ = halves
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="new data: features must be finite"):
        poisoning.screen(bad, y, trusted)
    with pytest.raises(ValueError, match="same features"):
        poisoning.screen(X[:, :10], y, trusted)
    with pytest.raises(ValueError, match="labels must be 0"):
        poisoning.screen(X, y + 1, trusted)
    with pytest.raises(ValueError, match="more rows than features"):
        poisoning.screen(X, y, (trusted[0][:40], trusted[1][:40]))
    with pytest.raises(ValueError, match="min_agreement"):
        poisoning.ScreenConfig(min_agreement=1.5)
    with pytest.raises(ValueError, match="min_label_probability"):
        poisoning.ScreenConfig(min_label_probability=float("nan"))
    with pytest.raises(ValueError, match="one entry per screened row"):
        poisoning.precision_recall(poisoning.screen(X, y, trusted), np.zeros(3, dtype=bool))
