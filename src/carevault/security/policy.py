"""The adaptive encryption policy: which suite protects one write (issue 6).

Every encryption the platform performs asks :meth:`EncryptionPolicy.decide` for a suite. A learned
model (a Random Forest compiled into a lookup table, see :mod:`.policy_model`) *proposes* one;
the guards in this module have the last word, and no model, table or input can get past them:

* a fixed allow-list of outputs (:data:`ALLOWED_SUITES`): anything else is never returned;
* a **floor** under every decision: the documented requirement for the data class and risk
  (:func:`required_suite`: sensitive data never below AES-256-GCM, more protection as risk
  rises), raised further by the explicit system-wide floor the response layer sets during an
  incident. The floor depends on the data class, the risk and the system floor only, never on
  inputs a client can claim (payload size, latency, traffic, CPU), so those can only move the
  choice *above* the floor;
* **monotone escalation with risk**: the floor is a step function of risk and the compiled table
  is made monotone along the risk axis when it is built (:func:`monotone_in_risk`), so a higher
  risk never yields a lower level, other inputs equal;
* the **strongest** suite (:data:`STRONGEST`) whenever there is no usable model or an input is
  missing, NaN, of the wrong type or out of range.

Docs: docs/policy.md (the rule, the cost model, the training data, the measured figures).
"""

from __future__ import annotations

import bisect
import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from carevault.crypto import Suite

if TYPE_CHECKING:
    from carevault.modelstore.store import ModelStore

log = logging.getLogger(__name__)


class DataClass(enum.Enum):
    ORDINARY = "ordinary"  # e.g. contact details, appointment notes, ordinary lab results
    SENSITIVE = (
        "sensitive"  # mental health, HIV/sexual health, genetic, substance use, reproductive
    )


ROLES = ("doctor", "patient", "labtech", "admin", "system")

# The strongest suite, returned whenever the policy cannot trust its model or its inputs. Every
# level-4 suite gives the same nominal protection (an asymmetric layer over AES-256-GCM, about
# 128-bit classical security for the key agreement); X25519 is the one with no parameter or
# padding choices to get wrong, constant-time by design, the cheapest of the three on this
# machine and 32 bytes of overhead instead of RSA's 384.
STRONGEST = Suite.HYBRID_X25519_AES_256_GCM

# The only suites the policy may ever return, listed by hand: a suite added to the crypto core
# later is not allowed here until someone decides it should be.
ALLOWED_SUITES: tuple[Suite, ...] = (
    Suite.AES_128_GCM,
    Suite.AES_192_GCM,
    Suite.AES_256_GCM,
    Suite.HYBRID_X25519_AES_256_GCM,
    Suite.HYBRID_P256_AES_256_GCM,
    Suite.RSA_3072_OAEP_AES_256_GCM,
)
_ALLOWED = frozenset(ALLOWED_SUITES)

# The suite that stands for each protection level when a floor has to be met: the cheapest of
# that level (the level-4 one is the strongest suite above).
LEVEL_SUITE: dict[int, Suite] = {
    1: Suite.AES_128_GCM,
    2: Suite.AES_192_GCM,
    3: Suite.AES_256_GCM,
    4: STRONGEST,
}

# The documented risk requirement: (risk at or above which, minimum level), per data class.
# Ordinary data: AES-128 at low risk, AES-192 from 0.3, AES-256 from 0.5, level 4 from 0.8.
# Sensitive data: never below AES-256 (the class floor), level 4 from 0.5.
REQUIREMENT: dict[DataClass, tuple[tuple[float, int], ...]] = {
    DataClass.ORDINARY: ((0.0, 1), (0.3, 2), (0.5, 3), (0.8, 4)),
    DataClass.SENSITIVE: ((0.0, 3), (0.5, 4)),
}
CLASS_FLOOR: dict[DataClass, Suite] = {
    data_class: LEVEL_SUITE[steps[0][1]] for data_class, steps in REQUIREMENT.items()
}
_RISK_STEPS = {
    data_class: (tuple(r for r, _ in steps), tuple(LEVEL_SUITE[level] for _, level in steps))
    for data_class, steps in REQUIREMENT.items()
}

MODEL_NAME = "encryption-policy"


def required_suite(data_class: DataClass, risk: float) -> Suite:
    """The floor the documented requirement sets for ``data_class`` at ``risk`` (in [0, 1])."""
    thresholds, suites = _RISK_STEPS[data_class]
    return suites[bisect.bisect_right(thresholds, risk) - 1]


@dataclass(frozen=True)
class PolicyInputs:
    data_class: DataClass
    payload_bytes: int
    role: str
    risk: float = 0.0  # current anomaly / risk score in [0, 1] (the threat-detection layer)
    cpu_percent: float = 0.0  # host CPU use 0..100
    latency_ms: float = 0.0  # network latency seen for the request
    traffic_rps: float = 0.0  # requests per second on this server
    constrained_device: bool = False  # the recipient is a constrained device

    def as_log(self) -> dict[str, Any]:
        """JSON-able; request metadata only (no patient data is ever an input)."""
        return {
            "data_class": _text(self.data_class),
            "payload_bytes": _number(self.payload_bytes),
            "role": _text(self.role),
            "risk": _number(self.risk),
            "cpu_percent": _number(self.cpu_percent),
            "latency_ms": _number(self.latency_ms),
            "traffic_rps": _number(self.traffic_rps),
            "constrained_device": _number(self.constrained_device),
        }


def _text(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    # Inputs can be anything a caller got wrong; never echo more than a short, printable token.
    text = str(value)
    return text if len(text) <= 32 and text.isprintable() else "<invalid>"


def _number(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else str(number)  # JSON has no NaN / inf
    return "<invalid>"


@dataclass(frozen=True)
class Decision:
    suite: Suite
    reason: str  # e.g. "AES-256-GCM because: sensitive data, risk 0.70"
    source: str  # "model" | "floor" | "fallback"
    floor: Suite  # the floor that applied to this decision
    proposed: Suite | None  # what the learned model proposed (None if not consulted)
    inputs: PolicyInputs

    def as_log(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs.as_log(),
            "suite": self.suite.label,
            "reason": self.reason,
            "source": self.source,
            "floor": self.floor.label,
            "proposed": None if self.proposed is None else self.proposed.label,
        }


# -- the compiled input grid ------------------------------------------------------------------
#
# The model sees each input through a fixed, coarse grid; the forest is trained on grid cells and
# compiled into one table entry per cell, so a decision is a handful of integer operations and one
# index (see docs/policy.md, "Speed"). Edges: a value v falls in bin bisect_right(edges, v).

PAYLOAD_BINS = 25  # bin = bit length of the size, capped: 0 B, 1 B, 2-3 B, ..., >= 8 MiB
RISK_BINS = 11  # bin = floor(10 * risk): steps of 0.1 (the requirement steps are multiples)
CPU_EDGES = (20.0, 40.0, 60.0, 80.0)
LATENCY_EDGES = (5.0, 20.0, 50.0, 100.0, 200.0)
TRAFFIC_EDGES = (10.0, 50.0, 200.0, 1000.0)
GRID_FEATURES = (
    "sensitive",
    "role",
    "payload_bin",
    "risk_bin",
    "cpu_bin",
    "latency_bin",
    "traffic_bin",
    "constrained",
)
GRID_SHAPE = (
    2,
    len(ROLES),
    PAYLOAD_BINS,
    RISK_BINS,
    len(CPU_EDGES) + 1,
    len(LATENCY_EDGES) + 1,
    len(TRAFFIC_EDGES) + 1,
    2,
)
RISK_AXIS = GRID_FEATURES.index("risk_bin")
GRID_VERSION = "grid/1"  # changes whenever the bins above change: old tables are then refused
_STRIDES = tuple(int(np.prod(GRID_SHAPE[i + 1 :])) for i in range(len(GRID_SHAPE)))
_ROLE_INDEX = {role: i for i, role in enumerate(ROLES)}
_INF = math.inf


def grid_cell(inputs: PolicyInputs) -> tuple[int, ...]:
    """The grid coordinates of valid ``inputs`` (see :func:`input_problem`)."""
    return (
        1 if inputs.data_class is DataClass.SENSITIVE else 0,
        _ROLE_INDEX[inputs.role],
        min(int(inputs.payload_bytes).bit_length(), PAYLOAD_BINS - 1),
        int(inputs.risk * 10),
        bisect.bisect_right(CPU_EDGES, inputs.cpu_percent),
        bisect.bisect_right(LATENCY_EDGES, inputs.latency_ms),
        bisect.bisect_right(TRAFFIC_EDGES, inputs.traffic_rps),
        1 if inputs.constrained_device else 0,
    )


def grid_index(cell: Sequence[int]) -> int:
    return sum(c * s for c, s in zip(cell, _STRIDES, strict=True))


def all_cells() -> NDArray[np.int64]:
    """Every grid cell as a row of coordinates, in table order (row i is table entry i)."""
    return np.indices(GRID_SHAPE).reshape(len(GRID_SHAPE), -1).T.astype(np.int64)


def input_problem(inputs: PolicyInputs) -> str | None:
    """Why ``inputs`` cannot be trusted (the policy then returns the strongest suite), or None."""
    try:
        if not isinstance(inputs, PolicyInputs):
            return "not policy inputs"
        if type(inputs.data_class) is not DataClass:
            return "unknown data class"
        if inputs.role not in _ROLE_INDEX:
            return "unknown role"
        size = inputs.payload_bytes
        if isinstance(size, bool | np.bool_) or not isinstance(size, int | np.integer):
            return "payload size is not a whole number"
        if size < 0:
            return "negative payload size"
        # Chained comparisons are False for NaN, so NaN lands here too.
        if not 0.0 <= inputs.risk <= 1.0:
            return "risk outside [0, 1]"
        if not 0.0 <= inputs.cpu_percent <= 100.0:
            return "CPU use outside 0..100"
        if not 0.0 <= inputs.latency_ms < _INF:
            return "latency negative or not finite"
        if not 0.0 <= inputs.traffic_rps < _INF:
            return "traffic negative or not finite"
        if not isinstance(inputs.constrained_device, bool | np.bool_):
            return "constrained-device flag is not a boolean"
    except (TypeError, ValueError):  # comparing a str with a float, an unhashable role...
        return "malformed input"
    return None


def monotone_in_risk(codes: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], int]:
    """``codes`` (indexes into :data:`ALLOWED_SUITES`, in grid shape or flat) with every cell
    raised to at least the level of the cells below it on the risk axis, and how many cells
    were raised. A raised cell gets the level's standard suite (:data:`LEVEL_SUITE`)."""
    grid = np.asarray(codes, dtype=np.uint8).reshape(GRID_SHAPE)
    levels = np.array([s.level for s in ALLOWED_SUITES], dtype=np.uint8)[grid]
    floor = np.maximum.accumulate(levels, axis=RISK_AXIS)
    raised = floor > levels
    by_level = np.zeros(max(LEVEL_SUITE) + 1, dtype=np.uint8)
    for level, suite in LEVEL_SUITE.items():
        by_level[level] = ALLOWED_SUITES.index(suite)
    out = np.where(raised, by_level[floor], grid).astype(np.uint8)
    return out.reshape(-1), int(raised.sum())


# -- the policy ----------------------------------------------------------------------------------


class EncryptionPolicy:
    """Decides the suite of each write. ``table`` is the compiled model (one code per grid cell,
    an index into :data:`ALLOWED_SUITES`); None means no model: always the strongest suite."""

    def __init__(
        self,
        table: NDArray[np.uint8] | None = None,
        *,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.info: dict[str, Any] = dict(info or {})
        self.raised_cells = 0
        self._table: bytes | None = None
        if table is not None:
            codes = np.asarray(table)
            if codes.shape not in (GRID_SHAPE, (int(np.prod(GRID_SHAPE)),)):
                raise ValueError(f"policy table has shape {codes.shape}, expected {GRID_SHAPE}")
            if (
                codes.dtype.kind not in "iu"
                or codes.min() < 0
                or codes.max() >= len(ALLOWED_SUITES)
            ):
                raise ValueError("policy table holds codes outside the allow-list")
            # Enforced here, on whatever table comes in (trained, sealed or hand-made): the
            # table is made monotone in risk before it can answer anything.
            monotone, self.raised_cells = monotone_in_risk(codes.astype(np.uint8))
            self._table = monotone.tobytes()  # bytes: indexing one is the cheapest lookup

    @property
    def has_model(self) -> bool:
        return self._table is not None

    def propose(self, inputs: PolicyInputs) -> Suite | None:
        """What the compiled model proposes for valid ``inputs`` (before the floor); None without
        a model."""
        if self._table is None:
            return None
        return ALLOWED_SUITES[self._table[grid_index(grid_cell(inputs))]]

    def decide(self, inputs: PolicyInputs, *, system_floor: Suite | None = None) -> Decision:
        problem = input_problem(inputs)
        if system_floor is not None and type(system_floor) is not Suite:
            problem = problem or "system floor is not a suite"
            system_floor = None
        if problem is not None:
            floor = STRONGEST
            if system_floor is not None and system_floor.level >= floor.level:
                floor = system_floor
            suite = STRONGEST if STRONGEST.level >= floor.level else floor
            reason = f"{suite.label} because: invalid input ({problem}), strongest suite"
            return Decision(suite, reason, "fallback", floor, None, inputs)

        data_class, risk = inputs.data_class, float(inputs.risk)
        floor = required_suite(data_class, risk)
        incident = system_floor is not None and system_floor.level >= floor.level
        if incident:
            assert system_floor is not None
            floor = system_floor
        proposed = self.propose(inputs)
        if proposed is None:
            suite, source = STRONGEST, "fallback"
        elif proposed.level >= floor.level:
            suite, source = proposed, "model"
        else:
            suite, source = floor, "floor"
        if suite.level < floor.level:  # only if a suite stronger than STRONGEST existed
            suite, source = floor, "floor"
        if suite not in _ALLOWED:  # a system floor outside the allow-list
            suite = LEVEL_SUITE.get(suite.level, STRONGEST)
        parts = [f"{data_class.value} data", f"risk {risk:.2f}"]
        if inputs.constrained_device:
            parts.append("constrained device")
        if incident:
            parts.append(f"system floor {floor.label}")
        if source == "fallback":
            parts.append("no trained policy, strongest suite")
        elif source == "floor":
            parts.append(f"model proposed {proposed}, raised to the floor")
        elif suite.level > floor.level:
            parts.append(f"learned choice above the required {floor.label}")
        return Decision(
            suite, f"{suite.label} because: {', '.join(parts)}", source, floor, proposed, inputs
        )

    def describe(self) -> dict[str, Any]:
        """For the dashboard: which policy is in force, and its guards."""
        return {
            "name": MODEL_NAME,
            "source": "model" if self.has_model else "fallback",
            "version": self.info.get("version", "none"),
            "trained_at": self.info.get("trained_at", ""),
            "strongest": STRONGEST.label,
            "allowed": [s.label for s in ALLOWED_SUITES],
            "class_floors": {c.value: s.label for c, s in CLASS_FLOOR.items()},
            "requirement": {
                c.value: [[r, LEVEL_SUITE[level].label] for r, level in steps]
                for c, steps in REQUIREMENT.items()
            },
            "raised_cells": self.raised_cells,
            **{k: v for k, v in self.info.items() if k not in ("version", "trained_at")},
        }


def strongest_policy() -> EncryptionPolicy:
    """No model: every decision is the strongest suite (source "fallback")."""
    return EncryptionPolicy(None, info={"version": "none", "note": "no trained policy"})


def load_policy(data_dir: str | Path) -> EncryptionPolicy:
    """The sealed trained policy in ``data_dir/models`` (``carevault security train-policy``).
    A missing or refused model gives :func:`strongest_policy` (logged), never an exception."""
    if not (Path(data_dir) / "models" / MODEL_NAME).is_dir():
        log.info("no trained encryption policy in %s: using the strongest suite", data_dir)
        return strongest_policy()
    try:
        from carevault.modelstore.datadir import model_store

        from .policy_model import load_compiled

        return load_compiled(model_store(data_dir))
    except Exception as exc:  # any failure at all must leave the platform encrypting strongly
        log.warning(
            "the trained encryption policy was refused (%s: %s): using the strongest suite",
            type(exc).__name__,
            str(exc)[:200],
        )
        return strongest_policy()


def train_policy(store: ModelStore, *, seed: int = 0, **options: Any) -> dict[str, Any]:
    """Measure the cost model, label, fit, compile and seal; the report (see policy_training)."""
    from .policy_training import train

    return train(store, seed=seed, **options)
