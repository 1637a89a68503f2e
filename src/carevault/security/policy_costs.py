"""The cost model behind the policy's labels, measured on this machine.

Each allowed suite encrypts and decrypts payloads from 16 B to 1 MiB through a real
:class:`~carevault.crypto.Keyring` (envelope, associated data, key agreement or RSA wrap for the
asymmetric suites: everything a write and a read of a record pay). A straight line
``seconds = per_call + per_byte * size`` is fitted to each suite's measurements, weighting every
size alike (relative error), so the 16-byte and the 1 MiB costs both come out right.

Times are the thread's CPU time (not wall time): on a shared machine a preempted call would
otherwise count another process's work; the best of several interleaved rounds is kept.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carevault.crypto import Keyring, Suite

from .policy import ALLOWED_SUITES

SIZES = (16, 256, 4096, 65536, 1 << 20)
# Calls per round and size: enough for the clock's resolution at small sizes, few at 1 MiB.
_CALLS = {16: 40, 256: 40, 4096: 20, 65536: 8, 1 << 20: 3}
_CONTEXT: dict[str, str | int] = {"table": "policy_costs", "column": "payload", "row": 1}


@dataclass(frozen=True)
class SuiteCost:
    suite: Suite
    per_call_s: float
    per_byte_s: float
    measured_s: dict[int, float] = field(default_factory=dict)  # size -> encrypt + decrypt

    def seconds(self, size: float) -> float:
        return self.per_call_s + self.per_byte_s * size

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite.label,
            "per_call_us": self.per_call_s * 1e6,
            "per_byte_ns": self.per_byte_s * 1e9,
            "measured_us": {str(size): s * 1e6 for size, s in self.measured_s.items()},
        }


@dataclass(frozen=True)
class CostModel:
    costs: dict[Suite, SuiteCost]
    measured_at: str = ""
    machine: str = ""

    def seconds(self, suite: Suite, size: float) -> float:
        return self.costs[suite].seconds(size)

    def as_dict(self) -> dict[str, Any]:
        return {
            "measured_at": self.measured_at,
            "machine": self.machine,
            "suites": [c.as_dict() for c in self.costs.values()],
        }

    @classmethod
    def from_lines(
        cls, lines: dict[Suite, tuple[float, float]], *, machine: str = "given"
    ) -> CostModel:
        """A cost model from known (per-call seconds, per-byte seconds), e.g. for tests."""
        return cls({s: SuiteCost(s, a, b) for s, (a, b) in lines.items()}, machine=machine)


def fit_line(sizes: Iterable[int], seconds: Iterable[float]) -> tuple[float, float]:
    """(per_call, per_byte) minimising the relative error, both clamped to be non-negative."""
    n = np.asarray(list(sizes), dtype=np.float64)
    t = np.asarray(list(seconds), dtype=np.float64)
    if n.size < 2 or n.size != t.size or not np.all(t > 0):
        raise ValueError("fit_line needs at least two positive timings, one per size")
    weights = 1.0 / t
    design = np.stack([np.ones_like(n), n], axis=1) * weights[:, None]
    (per_call, per_byte), *_ = np.linalg.lstsq(design, t * weights, rcond=None)
    if per_byte < 0:
        per_byte = 0.0
    if per_call <= 0:  # the line would say a tiny payload is free: keep the smallest timing
        per_call = float(t[np.argmin(n)])
    return float(per_call), float(per_byte)


def measure_costs(
    suites: Iterable[Suite] = ALLOWED_SUITES,
    *,
    sizes: Iterable[int] = SIZES,
    rounds: int = 5,
) -> CostModel:
    """Measure encrypt + decrypt per suite and size (CPU time, best of ``rounds``)."""
    chosen = list(suites)
    sizes = list(sizes)
    if rounds < 1 or not chosen or len(sizes) < 2:
        raise ValueError("measure_costs needs at least one suite, two sizes and one round")
    rings = {s: Keyring.generate(f"policy-cost:{s.label}", s) for s in chosen}
    payloads = {n: os.urandom(n) for n in sizes}
    best = {(s, n): float("inf") for s in chosen for n in sizes}
    clock = time.thread_time
    for ring in rings.values():  # warm-up: first-call allocations, lazy key objects
        ring.decrypt(ring.encrypt(payloads[sizes[0]], _CONTEXT), _CONTEXT)
    for _ in range(rounds):
        # Interleaved: a burst of load from elsewhere hits every suite alike.
        for n in sizes:
            data = payloads[n]
            calls = _CALLS.get(n, max(1, (1 << 16) // max(n, 1)))
            for suite, ring in rings.items():
                encrypt, decrypt = ring.encrypt, ring.decrypt
                start = clock()
                for _ in range(calls):
                    decrypt(encrypt(data, _CONTEXT), _CONTEXT)
                elapsed = (clock() - start) / calls
                best[suite, n] = min(best[suite, n], elapsed)
    costs = {}
    for suite in chosen:
        measured = {n: max(best[suite, n], 1e-9) for n in sizes}
        per_call, per_byte = fit_line(measured.keys(), measured.values())
        costs[suite] = SuiteCost(suite, per_call, per_byte, measured)
    return CostModel(
        costs,
        measured_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        machine=f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpu".strip(),
    )
