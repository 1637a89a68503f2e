"""The model attacker's tooling, shared by the model.* scenarios (not a scenario itself).

What the attacker holds, as the project's own extraction lab assumes (modelguard/attacks.py,
bench/models_extraction.py): the public data set's loader, of which it treats 20 cases as
published *with* their diagnoses (the free baseline) and the rest of the training split as real
aspirates *without* labels (what a doctor's workload looks like to the extraction monitor). The
held-out split is never queried: it is the evaluation set on which agreement is measured.

The referee (not the attacker) needs the served model's labels on that evaluation set. It gets
them from the project's training recipe (`carevault model train --seed 0` is deterministic: the
same split, the same estimator), and checks the recipe against the server on every answered
query: the scenario reports how many answered labels disagreed with the recipe (0 expected), so
a lab whose served model is not the recipe's shows up instead of silently skewing the figures.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from carevault.modelguard.attacks import solve_linear, surrogate_agreement
from carevault.modelguard.dataset import Split, load_split
from carevault.modelguard.models import LOGISTIC, fit

PUBLIC_CASES = 20
API_PATIENTS = "/api/v1/patients"
HE_PATH = "/api/v1/models/diagnosis/homomorphic"


@dataclass(frozen=True)
class Knowledge:
    split: Split
    public: NDArray[np.float64]  # the 20 published cases
    public_labels: list[int]  # their published diagnoses
    pool: NDArray[np.float64]  # real aspirates without labels
    X_eval: NDArray[np.float64]  # the referee's evaluation set (never queried)
    served_eval: NDArray[np.int64]  # the served model's labels on it (the recipe's)
    recipe: Any  # the recipe's pipeline (to check answered labels against)


def knowledge() -> Knowledge:
    split = load_split()
    recipe = fit(LOGISTIC, split.X_train, split.y_train)
    return Knowledge(
        split,
        split.X_train[:PUBLIC_CASES],
        [int(v) for v in split.y_train[:PUBLIC_CASES]],
        split.X_train[PUBLIC_CASES:],
        split.X_test,
        np.asarray(recipe.predict(split.X_test), dtype=np.int64),
        recipe,
    )


class _Referee:
    """A stand-in 'model' whose predict gives the served labels on the evaluation set."""

    def __init__(self, know: Knowledge) -> None:
        self.know = know

    def predict(self, cases: NDArray[np.float64]) -> NDArray[np.int64]:
        assert cases is self.know.X_eval
        return self.know.served_eval


def label_agreement(know: Knowledge, xs: list[NDArray[np.float64]], y: list[int]) -> float:
    """Agreement with the served model of a logistic surrogate trained on the public cases with
    their diagnoses plus the answered queries with the served labels."""
    cases = [*list(know.public), *xs]
    labels = [*know.public_labels, *y]
    return surrogate_agreement(cases, labels, _Referee(know), know.X_eval)


def draw_spread(know: Knowledge, n: int, draws: int = 20) -> tuple[float, float, float]:
    """Lowest, mean and highest agreement of ``n`` random pool cases labelled by the served
    model (the recipe's labels), over ``draws`` draws: how much of a curve is luck of the draw."""
    if n == 0:
        return (baseline(know),) * 3
    rng = np.random.default_rng(0)
    labels = know.recipe.predict(know.pool)
    values = []
    for _ in range(draws):
        chosen = rng.choice(len(know.pool), size=min(n, len(know.pool)), replace=False)
        values.append(
            label_agreement(know, list(know.pool[chosen]), [int(v) for v in labels[chosen]])
        )
    return min(values), float(np.mean(values)), max(values)


def baseline(know: Knowledge) -> float:
    return label_agreement(know, [], [])


def solved_agreement(know: Knowledge, xs: list[NDArray[np.float64]], scores: list[float]) -> float:
    """Agreement of the linear model solved (least squares) from decrypted scores."""
    w = solve_linear(xs, scores)
    predict = ((know.X_eval @ w[:-1] + w[-1]) >= 0).astype(np.int64)
    return float(np.mean(predict == know.served_eval))


def curve_points(n: int) -> list[int]:
    """Where to measure a stolen model after ``n`` answers: every answer to 40, then sparser."""
    points = [*range(1, min(n, 40) + 1), *range(45, min(n, 100) + 1, 5), *range(120, n + 1, 20)]
    if n and n not in points:
        points.append(n)
    return sorted(set(points))


def logit(p: float) -> float:
    p = min(max(p, 0.02), 0.98)
    return float(np.log(p / (1 - p)))


_RUN = re.compile(r'class="border rounded p-2 mb-2 diagnosis-run">(.*?)</div>', re.S)
_LABEL = re.compile(r"<strong[^>]*>\s*(malignant|benign)\s*</strong>")
_CONFIDENCE = re.compile(r"P\(malignant\)\s*(?:≈|&asymp;|&#8776;)\s*([0-9.]+)")


def newest_run(page: str) -> tuple[int, float | None] | None:
    """The newest diagnosis on the doctor's page: (label, released confidence or None)."""
    match = _RUN.search(page)
    if match is None:
        return None
    block = html.unescape(match.group(1))
    label = _LABEL.search(block)
    if label is None:
        return None
    confidence = _CONFIDENCE.search(block)
    return (
        1 if label.group(1) == "malignant" else 0,
        float(confidence.group(1)) if confidence else None,
    )


def gain_points(agreement: float, base: float) -> float:
    return round((agreement - base) * 100, 2)


def patient_of(client: Any) -> str:
    """The first patient on a signed-in doctor's list (the API)."""
    answer = client.get_json(API_PATIENTS)
    results = answer.get("results") or []
    if not results:
        raise RuntimeError("the doctor has no patient to run diagnoses for")
    return str(results[0]["id"])
