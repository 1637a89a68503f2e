"""The extraction attack lab: real attackers against the real policy, budget and monitor.

* :func:`equation_solving` (Tramèr et al. 2016): queries random points (the feature box, or
  perturbed public cases, where the model's confidence is not saturated),
  takes ``logit`` of the released P(malignant) and solves the linear system for the logistic
  model's weights and bias by least squares; ``d + 1`` queries suffice with full confidences.
  Without confidences (label only) it has nothing to solve and fits a logistic surrogate to
  the labels instead.
* :func:`retraining`: starts from a few public cases, perturbs them, and (adaptive variant)
  spends later queries on line searches across its surrogate's boundary, then trains a
  logistic surrogate on the released labels.
* :func:`real_cases`: retraining on real cases only (a stolen or public set of aspirates, no
  labels): the attacker a doctor's workload cannot be told from, kept in the lab so the
  report shows what the monitor cannot do.

Every attacker decides its next query from the answers so far only, so a run that is cut off
is a prefix of the same run left alone: its curve is the uncut curve up to the cut-off.

Each query goes through :class:`Gate` (budget, then monitor, then the obfuscation policy), the
way the service would run it. A full budget window does not end the attack: a patient attacker
waits for the window to move on (``wait_on_budget``), so the budget shows up as time taken;
only the monitor's alarm, which sticks, cuts the attacker off. Every result carries the stolen
model's agreement with ours after each checkpoint, so a report can say when it passed 90%.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from .budgets import BudgetExceeded, QueryBudget
from .extraction import ExtractionMonitor
from .obfuscation import ObfuscatedOutput, OutputPolicy, obfuscate

Array = NDArray[np.float64]
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


class GateClosed(Exception):
    """The gate stopped answering the client: its budget ran out (when it does not wait) or the
    extraction monitor alerted. The message, like ``Gate.cut_reason``, says which."""


@dataclass
class Gate:
    """One client's view of the service: budget, monitor and output policy around the model."""

    model: Pipeline
    policy: OutputPolicy
    monitor: ExtractionMonitor | None
    budget: QueryBudget | None
    client_id: str
    interval: timedelta
    rng: np.random.Generator
    wait_on_budget: bool = True
    queries: int = 0
    budget_waits: int = 0
    cut_reason: str = ""
    _now: datetime = field(default=START)

    @property
    def elapsed(self) -> timedelta:
        return self._now - START

    def query(self, x: Array) -> ObfuscatedOutput:
        if self.cut_reason:
            raise GateClosed(self.cut_reason)
        while self.budget is not None:
            try:
                self.budget.charge(self.client_id, self._now)
                break
            except BudgetExceeded as exc:
                if not self.wait_on_budget:
                    self.cut_reason = f"budget: {exc.window}"
                    raise GateClosed(self.cut_reason) from exc
                self.budget_waits += 1
                self._now += exc.retry_after + timedelta(seconds=1)
        self._now += self.interval
        if self.monitor is not None:
            verdict = self.monitor.observe(self.client_id, x)
            if verdict.alert:
                self.cut_reason = f"monitor: {verdict.reason}"
                raise GateClosed(self.cut_reason)
        self.queries += 1
        proba = float(self.model.predict_proba(x[None, :])[0, 1])
        return obfuscate(self.policy, proba, rng=self.rng)


@dataclass(frozen=True)
class AttackResult:
    attacker: str
    queries: int  # answered before the cut-off (or the attacker's whole allowance)
    cut_off: bool
    reason: str
    agreement: float  # stolen model vs ours on the test split, at the end
    # (answered queries, agreement of the model the attacker could build from them)
    curve: tuple[tuple[int, float], ...] = ()
    elapsed: timedelta = timedelta(0)

    @property
    def peak_agreement(self) -> float:
        """The best agreement the attacker held at any checkpoint before it stopped."""
        return max([self.agreement, *(a for _, a in self.curve)])

    def queries_to_exceed(self, threshold: float) -> int | None:
        """The first checkpoint at which the stolen model agreed on more than ``threshold``."""
        return next((n for n, a in self.curve if a > threshold), None)


def checkpoints(max_queries: int) -> list[int]:
    """Where the lab measures the stolen model: every query to 40, then sparser."""
    points = [*range(1, 41), *range(45, 101, 5), *range(120, max_queries + 1, 20)]
    return [n for n in points if n <= max_queries]


def _agreement(predict: NDArray[np.int64], model: Pipeline, X_test: Array) -> float:
    return float(np.mean(predict == model.predict(X_test)))


def _fit_labels(X: Array, y: Sequence[int], random_state: int) -> Pipeline | None:
    if len(set(y)) < 2:
        return None
    return make_pipeline(
        StandardScaler(),
        # The same objective as the default lbfgs (unpenalised intercept, so the same attacker),
        # but Newton steps: on a few dozen separable points lbfgs spends ~20 ms per fit creeping
        # towards large weights, and the lab fits thousands of surrogates.
        LogisticRegression(
            C=100.0, solver="newton-cholesky", max_iter=5000, random_state=random_state
        ),
    ).fit(X, np.asarray(y))


def surrogate_agreement(
    X: Sequence[Array], y: Sequence[int], model: Pipeline, X_test: Array
) -> float:
    """Agreement of a logistic surrogate trained on ``(X, y)`` (the majority label if ``y``
    holds one class only; all benign with no data)."""
    surrogate = _fit_labels(np.asarray(X), y, 0)
    if surrogate is None:
        majority = round(float(np.mean(y))) if len(y) else 0
        return _agreement(np.full(len(X_test), majority), model, X_test)
    return _agreement(surrogate.predict(X_test), model, X_test)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def solve_linear(X: Sequence[Array], scores: Sequence[float]) -> Array:
    """Least-squares weights and bias (last) with ``X @ w + b = scores``."""
    A = np.hstack([np.asarray(X), np.ones((len(X), 1))])
    # Standardise the columns so the least-squares solve is well conditioned.
    col = np.abs(A).max(axis=0) + 1e-12
    solution, *_ = np.linalg.lstsq(A / col, np.asarray(scores), rcond=None)
    return np.asarray(solution / col, dtype=np.float64)


def _result(
    name: str, gate: Gate, answered: int, measure: Callable[[int], float], curve: bool
) -> AttackResult:
    """How an attack ended: ``measure(n)`` is the stolen model's agreement after n answers."""
    return AttackResult(
        name,
        answered,
        bool(gate.cut_reason),
        gate.cut_reason,
        measure(answered),
        _curve(answered, measure, curve),
        gate.elapsed,
    )


def _curve(
    answered: int, measure: Callable[[int], float], wanted: bool
) -> tuple[tuple[int, float], ...]:
    if not wanted:
        return ()
    return tuple((n, measure(n)) for n in checkpoints(answered))


def equation_solving(
    gate: Gate,
    public: Array,
    X_test: Array,
    max_queries: int,
    random_state: int,
    *,
    in_box: bool = False,
    perturbation: float = 0.3,
    curve: bool = True,
) -> AttackResult:
    rng = np.random.default_rng(random_state)
    lo, hi = public.min(axis=0), public.max(axis=0)
    scale = public.std(axis=0) + 1e-12
    X: list[Array] = []
    labels: list[int] = []
    scores: list[float] = []
    for _ in range(max_queries):
        if in_box:
            x = rng.uniform(lo, hi)
        else:
            base = public[int(rng.integers(len(public)))]
            x = base + rng.normal(0.0, perturbation, base.shape) * scale
        try:
            out = gate.query(x)
        except GateClosed:
            break
        X.append(x)
        labels.append(out.label)
        if out.confidence is not None:
            scores.append(_logit(out.confidence))

    def measure(n: int) -> float:
        if len(scores) == len(X) and n > 0:
            w = solve_linear(X[:n], scores[:n])
            predict = ((X_test @ w[:-1] + w[-1]) >= 0).astype(np.int64)
            return _agreement(predict, gate.model, X_test)
        return surrogate_agreement(X[:n], labels[:n], gate.model, X_test)

    name = "equation-solving, box" if in_box else "equation-solving"
    return _result(name, gate, len(X), measure, curve)


def retraining(
    gate: Gate,
    public: Array,
    X_test: Array,
    max_queries: int,
    random_state: int,
    *,
    adaptive: bool = True,
    perturbation: float = 0.1,
    curve: bool = True,
) -> AttackResult:
    rng = np.random.default_rng(random_state)
    scale = public.std(axis=0) + 1e-12
    X: list[Array] = []
    y: list[int] = []
    surrogate: Pipeline | None = None
    for i in range(max_queries):
        if adaptive and surrogate is not None and i % 2 == 1:
            # Bisect between a benign and a malignant known point: lands near the boundary.
            ya = np.asarray(y)
            a = X[int(rng.choice(np.flatnonzero(ya == 0)))]
            b = X[int(rng.choice(np.flatnonzero(ya == 1)))]
            for _ in range(6):
                mid = (a + b) / 2
                if surrogate.predict(mid[None, :])[0] == 1:
                    b = mid
                else:
                    a = mid
            x = (a + b) / 2
        else:
            base = public[int(rng.integers(len(public)))]
            x = base + rng.normal(0.0, perturbation, base.shape) * scale
        try:
            out = gate.query(x)
        except GateClosed:
            break
        X.append(x)
        y.append(out.label)
        if adaptive and i % 10 == 9:
            surrogate = _fit_labels(np.asarray(X), y, random_state)
    name = "retraining, adaptive" if adaptive else "retraining"

    def measure(n: int) -> float:
        return surrogate_agreement(X[:n], y[:n], gate.model, X_test)

    return _result(name, gate, len(X), measure, curve)


def real_cases(
    gate: Gate,
    pool: Array,
    X_test: Array,
    max_queries: int,
    random_state: int,
    *,
    curve: bool = True,
) -> AttackResult:
    """Retraining on real, unlabelled cases drawn from ``pool`` (never the test split)."""
    rng = np.random.default_rng(random_state)
    order = rng.permutation(len(pool))
    X: list[Array] = []
    y: list[int] = []
    for i in range(max_queries):
        x = pool[int(order[i % len(order)])]
        try:
            out = gate.query(x)
        except GateClosed:
            break
        X.append(x)
        y.append(out.label)

    def measure(n: int) -> float:
        return surrogate_agreement(X[:n], y[:n], gate.model, X_test)

    return _result("retraining, real cases", gate, len(X), measure, curve)
