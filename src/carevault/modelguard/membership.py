"""Membership inference: how much better than a coin can an attacker tell whether a patient's
record was in the training set, from the model's confidence in that record's true label?

The attack is the loss-threshold attack (Yeom et al., CSF 2018): a record is called a member when
the model's loss on it is below a threshold. The advantage is TPR - FPR (0 = no leakage, 1 = total).
Picking the best threshold on the same records it is scored on inflates the figure for a model
that leaks nothing (on ~100 records, the maximum of many noisy TPR - FPR values is ~0.1), so the
threshold is chosen on one half of the members and non-members and the advantage is measured on
the other half, then the halves swap and the two figures are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestClassifier


class ProbabilisticModel(Protocol):
    def predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]: ...


@dataclass(frozen=True)
class MembershipResult:
    advantage: float  # held-out TPR - FPR of the loss-threshold attack
    train_accuracy: float
    test_accuracy: float
    members: int
    non_members: int


def per_record_loss(
    model: ProbabilisticModel, X: NDArray[np.float64], y: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Cross-entropy of the model on each record's true label."""
    y = np.asarray(y)
    if y.ndim != 1 or not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError("labels must be a 1-D array of 0 (benign) and 1 (malignant)")
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    if proba.shape != (len(y), 2):
        raise ValueError("the model must give two class probabilities for each labelled record")
    p_true = proba[np.arange(len(y)), y.astype(np.int64)]
    return np.asarray(-np.log(np.clip(p_true, 1e-12, 1.0)), dtype=np.float64)


def best_threshold(member_loss: NDArray[np.float64], non_member_loss: NDArray[np.float64]) -> float:
    """The loss threshold maximising TPR - FPR for "loss <= threshold means member"."""
    candidates = np.unique(np.concatenate([member_loss, non_member_loss]))
    tpr = (member_loss[None, :] <= candidates[:, None]).mean(axis=1)
    fpr = (non_member_loss[None, :] <= candidates[:, None]).mean(axis=1)
    return float(candidates[int(np.argmax(tpr - fpr))])


def threshold_advantage(
    member_loss: NDArray[np.float64], non_member_loss: NDArray[np.float64], threshold: float
) -> float:
    return float(np.mean(member_loss <= threshold) - np.mean(non_member_loss <= threshold))


def attack_advantage(
    member_loss: NDArray[np.float64], non_member_loss: NDArray[np.float64], random_state: int = 0
) -> float:
    """Two-fold held-out advantage of the loss-threshold attack."""
    if len(member_loss) < 4 or len(non_member_loss) < 4:
        raise ValueError("need at least 4 members and 4 non-members to measure an advantage")
    rng = np.random.default_rng(random_state)
    m = rng.permutation(member_loss)
    n = rng.permutation(non_member_loss)
    m_halves = (m[: len(m) // 2], m[len(m) // 2 :])
    n_halves = (n[: len(n) // 2], n[len(n) // 2 :])
    scores = []
    for fit, held in ((0, 1), (1, 0)):
        t = best_threshold(m_halves[fit], n_halves[fit])
        scores.append(threshold_advantage(m_halves[held], n_halves[held], t))
    return float(np.mean(scores))


def measure(
    model: ProbabilisticModel,
    X_members: NDArray[np.float64],
    y_members: NDArray[np.int64],
    X_non_members: NDArray[np.float64],
    y_non_members: NDArray[np.int64],
    random_state: int = 0,
) -> MembershipResult:
    """The attack's advantage on a fitted model, members being exactly its training records."""
    member_loss = per_record_loss(model, X_members, y_members)
    non_member_loss = per_record_loss(model, X_non_members, y_non_members)

    def accuracy(X: NDArray[np.float64], y: NDArray[np.int64]) -> float:
        predicted = np.argmax(np.asarray(model.predict_proba(X)), axis=1)
        return float(np.mean(predicted == y))

    return MembershipResult(
        advantage=attack_advantage(member_loss, non_member_loss, random_state),
        train_accuracy=accuracy(X_members, y_members),
        test_accuracy=accuracy(X_non_members, y_non_members),
        members=len(y_members),
        non_members=len(y_non_members),
    )


def overfit_control(
    X: NDArray[np.float64], y: NDArray[np.int64], random_state: int = 0
) -> RandomForestClassifier:
    """The positive control: fully grown trees without bootstrap memorise every training record
    (loss ~0 on members), while unseen records get split votes, so a working attack must show a
    clearly positive advantage against it."""
    forest = RandomForestClassifier(
        n_estimators=50,
        min_samples_leaf=1,
        bootstrap=False,
        max_features=1,
        n_jobs=1,
        random_state=random_state,
    )
    return forest.fit(X, y)
