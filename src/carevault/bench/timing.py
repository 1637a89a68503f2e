"""Small timing helpers shared by the benchmarks (interleaved, best-of-N, no warm-up bias)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np


def per_call_seconds(
    candidates: dict[str, Callable[[], object]], *, calls: int, rounds: int
) -> dict[str, float]:
    """Best per-call time of each candidate over ``rounds`` rounds of ``calls`` calls.

    Candidates run interleaved round by round, so a burst of noise from the rest of the machine
    hits all of them alike instead of one; the minimum is the least-disturbed estimate.
    """
    best = dict.fromkeys(candidates, float("inf"))
    for fn in candidates.values():  # warm-up: caches, lazy imports, first allocations
        fn()
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / calls)
    return best


def per_call_samples(
    candidates: dict[str, Callable[[], object]], *, calls: int, rounds: int
) -> dict[str, list[float]]:
    """Per-call time of each candidate in each of ``rounds`` rounds of ``calls`` calls.

    Candidates run interleaved round by round (the order rotating each round), so noise from
    the rest of the machine hits all alike; callers take medians, per measure or of per-round
    ratios (the two sides of a ratio ran side by side, so their noise mostly cancels).
    """
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    items = list(candidates.items())
    for _, fn in items:  # warm-up: caches, lazy imports, first allocations
        for _ in range(min(calls, 100)):
            fn()
    for number in range(rounds):
        shift = number % len(items)
        for name, fn in items[shift:] + items[:shift]:
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls)
    return samples


def percentiles_ms(samples: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of ``samples`` (seconds), in milliseconds."""
    values = np.asarray(samples, dtype=np.float64) * 1e3
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
    }
