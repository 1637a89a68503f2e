"""Training the encryption policy: labels from the measured cost model and the documented rule,
a Random Forest fitted to them, compiled into one table entry per grid cell, sealed.

The labelling rule (:class:`LabelRule`, docs/policy.md "Labels"): among the allowed suites that
meet the documented requirement for the data class and risk (:func:`~.policy.required_suite`),
take the cheapest under the cost model; then spend the request's spare budget on protection:
the label is the strongest suite whose cost is within the cheapest's plus that budget. The budget
is zero for constrained devices and background jobs (role "system": bulk work where every
microsecond is multiplied), shrinks to zero as CPU use and traffic rise, and grows with the
network latency the request already waits. Costs within a few per cent count as equal (that is
measurement noise), and equal costs go to the stronger suite.

Why a forest at all, when the rule could be evaluated directly: the rule needs the cost model
and a dozen float operations per suite; the forest, compiled over the input grid, gives one
table lookup, and retraining on measured costs (or, later, on observed load) changes no code.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils import check_random_state

from carevault.crypto import Suite
from carevault.modelstore.store import ModelStore

from .policy import (
    ALLOWED_SUITES,
    MODEL_NAME,
    ROLES,
    DataClass,
    EncryptionPolicy,
    PolicyInputs,
    all_cells,
    grid_cell,
    required_suite,
)
from .policy_costs import CostModel, measure_costs
from .policy_model import TRUSTED_TYPES, PolicyModel

INPUT_COLUMNS = [
    "sensitive",
    "role",
    "payload_bytes",
    "risk",
    "cpu_percent",
    "latency_ms",
    "traffic_rps",
    "constrained_device",
]
_CODE = {suite: code for code, suite in enumerate(ALLOWED_SUITES)}


@dataclass(frozen=True)
class LabelRule:
    """The rule that labels the training data (every number here is documented in
    docs/policy.md and sealed with the model)."""

    idle_budget_s: float = 25e-6  # extra CPU a write may spend on an idle server
    latency_share: float = 0.002  # plus this share of the network time the request waits anyway
    cpu_full_percent: float = 85.0  # no spare budget from this CPU use up
    traffic_full_rps: float = 500.0  # nor from this request rate up
    tie_tolerance: float = 0.05  # cost differences under 5 % are noise: ties go to the stronger
    version: str = "rule/1"

    def budget_s(self, inputs: PolicyInputs) -> float:
        """Seconds of CPU this write may spend above the cheapest suite that meets the floor."""
        if inputs.constrained_device or inputs.role == "system":
            return 0.0
        headroom = max(0.0, 1.0 - inputs.cpu_percent / self.cpu_full_percent) * max(
            0.0, 1.0 - inputs.traffic_rps / self.traffic_full_rps
        )
        return headroom * (self.idle_budget_s + self.latency_share * inputs.latency_ms / 1e3)

    def label(self, inputs: PolicyInputs, costs: CostModel) -> Suite:
        floor = required_suite(inputs.data_class, inputs.risk).level
        allowed = [s for s in ALLOWED_SUITES if s.level >= floor and s in costs.costs]
        if not allowed:
            raise ValueError(f"the cost model has no suite of level {floor} or above")
        cost = {s: costs.seconds(s, inputs.payload_bytes) for s in allowed}
        limit = min(cost.values()) * (1.0 + self.tie_tolerance) + self.budget_s(inputs)
        return max((s for s in allowed if cost[s] <= limit), key=lambda s: (s.level, -cost[s]))


def sample_inputs(random_state: Any, n: int) -> list[PolicyInputs]:
    """``n`` inputs spread over the whole grid (not a realistic mix: the forest must see every
    corner). Sizes and network figures are log-uniform, risk and CPU uniform."""
    rng = check_random_state(random_state)
    sensitive = rng.random_sample(n) < 0.5
    roles = rng.randint(len(ROLES), size=n)
    bits = rng.randint(0, 25, size=n)
    sizes = np.where(bits == 0, 0, (2.0 ** (bits - 1 + rng.random_sample(n)))).astype(np.int64)
    risk = rng.random_sample(n)
    cpu = rng.random_sample(n) * 100.0
    latency = np.where(rng.random_sample(n) < 0.05, 0.0, 10 ** rng.uniform(-1, 3, size=n))
    traffic = np.where(rng.random_sample(n) < 0.05, 0.0, 10 ** rng.uniform(-1, 3.7, size=n))
    constrained = rng.random_sample(n) < 0.25
    return [
        PolicyInputs(
            DataClass.SENSITIVE if sensitive[i] else DataClass.ORDINARY,
            int(sizes[i]),
            ROLES[roles[i]],
            risk=float(risk[i]),
            cpu_percent=float(cpu[i]),
            latency_ms=float(latency[i]),
            traffic_rps=float(traffic[i]),
            constrained_device=bool(constrained[i]),
        )
        for i in range(n)
    ]


def input_matrix(inputs: list[PolicyInputs]) -> NDArray[np.float64]:
    """The raw inputs as numbers (columns :data:`INPUT_COLUMNS`): the kept training data."""
    return np.array(
        [
            [
                x.data_class is DataClass.SENSITIVE,
                ROLES.index(x.role),
                x.payload_bytes,
                x.risk,
                x.cpu_percent,
                x.latency_ms,
                x.traffic_rps,
                x.constrained_device,
            ]
            for x in inputs
        ],
        dtype=np.float64,
    ).reshape(len(inputs), len(INPUT_COLUMNS))


def grid_matrix(inputs: list[PolicyInputs]) -> NDArray[np.float64]:
    """What the forest sees: each input's grid cell."""
    return np.array([grid_cell(x) for x in inputs], dtype=np.float64).reshape(len(inputs), -1)


def labels(inputs: list[PolicyInputs], costs: CostModel, rule: LabelRule) -> NDArray[np.int64]:
    return np.array([_CODE[rule.label(x, costs)] for x in inputs], dtype=np.int64)


def fit_forest(
    X: NDArray[np.float64],
    y: NDArray[np.int64],
    *,
    n_estimators: int = 30,
    min_samples_leaf: int = 2,
    random_state: Any = None,
) -> RandomForestClassifier:
    rng = check_random_state(random_state)
    forest = RandomForestClassifier(
        n_estimators=n_estimators,
        min_samples_leaf=min_samples_leaf,
        # Every feature at every split: there are only eight, and the rule uses them jointly.
        max_features=None,
        random_state=rng.randint(2**31 - 1),
    )
    return forest.fit(X, y)


def compile_table(forest: RandomForestClassifier, chunk: int = 131_072) -> NDArray[np.uint8]:
    """The forest's prediction for every grid cell, in table order (exactly its predict())."""
    cells = all_cells().astype(np.float64)
    out = np.empty(cells.shape[0], dtype=np.uint8)
    for start in range(0, cells.shape[0], chunk):
        out[start : start + chunk] = forest.predict(cells[start : start + chunk])
    return out


def evaluate(
    policy: EncryptionPolicy, inputs: list[PolicyInputs], costs: CostModel, rule: LabelRule
) -> dict[str, Any]:
    """How often the compiled policy (after its guards) picks the rule's label, or its level;
    and how many decisions fell below the requirement (must be none)."""
    exact = level = below = 0
    for x in inputs:
        want = rule.label(x, costs)
        got = policy.decide(x).suite
        exact += got is want
        level += got.level == want.level
        below += got.level < required_suite(x.data_class, x.risk).level
    n = max(len(inputs), 1)
    return {"inputs": len(inputs), "exact": exact / n, "level": level / n, "below_floor": below}


@dataclass
class Fitted:
    """A policy fitted in memory (what :func:`train` seals, what the benchmark uses)."""

    forest: RandomForestClassifier
    table: NDArray[np.uint8]
    policy: EncryptionPolicy
    costs: CostModel
    rule: LabelRule
    train_inputs: list[PolicyInputs]
    train_labels: NDArray[np.int64]
    report: dict[str, Any]


def fit(
    *,
    seed: int = 0,
    samples: int = 40_000,
    held_out: int = 10_000,
    n_estimators: int = 30,
    rounds: int = 5,
    costs: CostModel | None = None,
    rule: LabelRule | None = None,
) -> Fitted:
    """Measure (unless ``costs`` is given), label, fit, compile and evaluate; nothing written."""
    if samples < 100 or held_out < 1 or n_estimators < 1 or rounds < 1:
        raise ValueError(
            "train-policy needs at least 100 samples, 1 held-out input, 1 tree and 1 round"
        )
    rule = rule or LabelRule()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if costs is None:
        costs = measure_costs(rounds=rounds)
    seconds["measure"] = time.perf_counter() - start

    start = time.perf_counter()
    rng = np.random.RandomState(seed)
    train_inputs = sample_inputs(rng, samples)
    y = labels(train_inputs, costs, rule)
    X = grid_matrix(train_inputs)
    seconds["label"] = time.perf_counter() - start

    start = time.perf_counter()
    forest = fit_forest(X, y, n_estimators=n_estimators, random_state=rng)
    seconds["fit"] = time.perf_counter() - start

    start = time.perf_counter()
    table = compile_table(forest)
    policy = EncryptionPolicy(table)
    seconds["compile"] = time.perf_counter() - start

    start = time.perf_counter()
    # A seed of its own for the held-out inputs: never the training rows again.
    test_inputs = sample_inputs(np.random.RandomState(seed + 1_000_003), held_out)
    accuracy = evaluate(policy, test_inputs, costs, rule)
    test_y = labels(test_inputs, costs, rule)
    accuracy["forest_exact"] = float(np.mean(forest.predict(grid_matrix(test_inputs)) == test_y))
    seconds["evaluate"] = time.perf_counter() - start

    distribution = Counter(ALLOWED_SUITES[code].label for code in y.tolist())
    report: dict[str, Any] = {
        "model": MODEL_NAME,
        "seed": seed,
        "samples": samples,
        "held_out": held_out,
        "n_estimators": n_estimators,
        "costs": costs.as_dict(),
        "rule": asdict(rule),
        "label_distribution": {s.label: distribution.get(s.label, 0) for s in ALLOWED_SUITES},
        "accuracy": accuracy,
        "raised_cells": policy.raised_cells,
        "table_cells": int(table.size),
        "seconds": seconds,
    }
    return Fitted(forest, table, policy, costs, rule, train_inputs, y, report)


def train(store: ModelStore, *, seed: int = 0, **options: Any) -> dict[str, Any]:
    """:func:`fit`, then seal the forest, its table, the training data, the rule and the cost
    model as the next version of the policy. Returns the report (also in the manifest)."""
    fitted = fit(seed=seed, **options)
    report = dict(fitted.report)
    bundle = PolicyModel(
        fitted.forest,
        fitted.table,
        training_inputs=input_matrix(fitted.train_inputs),
        training_labels=fitted.train_labels,
        input_columns=INPUT_COLUMNS,
        rule=asdict(fitted.rule),
        costs=fitted.costs.as_dict(),
        report=report,
    )
    info = store.save(MODEL_NAME, bundle, trusted_types=TRUSTED_TYPES, metadata=report)
    report["version"] = info.version
    report["path"] = str(info.path)
    return report


def render_train(report: dict[str, Any]) -> str:
    from carevault.platform.tables import format_table

    cost_rows = [
        [
            c["suite"],
            f"{c['per_call_us']:.1f}",
            f"{c['per_byte_ns']:.3f}",
            *(f"{us:.1f}" for us in c["measured_us"].values()),
        ]
        for c in report["costs"]["suites"]
    ]
    sizes = list(report["costs"]["suites"][0]["measured_us"]) if cost_rows else []
    cost_table = format_table(
        ["suite", "per call us", "per byte ns", *(f"{s} B us" for s in sizes)], cost_rows
    )
    total = max(sum(report["label_distribution"].values()), 1)
    label_table = format_table(
        ["label", "training rows", "share"],
        [
            [suite, str(n), f"{100 * n / total:.1f} %"]
            for suite, n in report["label_distribution"].items()
        ],
    )
    acc, secs = report["accuracy"], report["seconds"]
    return (
        f"measured cost model (encrypt + decrypt through a Keyring, CPU time, best of rounds):\n"
        f"{cost_table}\n\n"
        f"labels ({report['samples']} sampled inputs, rule {report['rule']['version']}):\n"
        f"{label_table}\n\n"
        f"held-out ({acc['inputs']} inputs): policy picks the rule's suite "
        f"{100 * acc['exact']:.2f} % (same level {100 * acc['level']:.2f} %), forest alone "
        f"{100 * acc['forest_exact']:.2f} %; below the floor: {acc['below_floor']}\n"
        f"table: {report['table_cells']} cells, {report['raised_cells']} raised for monotone "
        f"risk\n"
        f"time: measure {secs['measure']:.1f} s, label {secs['label']:.1f} s, fit "
        f"{secs['fit']:.1f} s, compile {secs['compile']:.1f} s, evaluate {secs['evaluate']:.1f} s\n"
        f"sealed {report['model']} v{report['version']} in {report['path']}"
    )


def rule_table_suite(inputs: PolicyInputs) -> Suite:
    """The plain rule table the benchmark compares with: the documented requirement alone,
    one fixed suite per level, no cost model and no load."""
    return required_suite(inputs.data_class, inputs.risk)
