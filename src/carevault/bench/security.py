"""``carevault bench security``: the risk ensemble against its budgets (issue 5, "Budgets").

* scoring one event on the request path: the whole ``assess(event)`` (features, four detectors,
  calibration, fusion, rules) p50 / p99, goal p99 <= 1 ms; beside it the same ensemble through
  scikit-learn's own per-call API, which is what the fast path replaces;
* batch scoring on one core (BLAS and OpenMP held to one thread): the ensemble on feature
  matrices, and end to end with feature extraction, goal >= 50,000 events/s;
* training on 1 M generated events (generation, features, fitting, calibration), goal < 5 min;
* the record page with threat scoring in the background, on the request and off
  (:mod:`carevault.bench.scoring_path`, issue 16; run by the command in a scratch database).

The ensemble runs in memory on generated traffic; nothing is written to the data directory.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from carevault.platform.tables import format_table
from carevault.security.features import FeatureExtractor
from carevault.security.scoring import EnsembleRiskScorer
from carevault.security.training import TrainConfig, build_dataset, fit_ensemble, validation_seed

GOALS = {"assess_p99_ms_max": 1.0, "batch_events_per_s_min": 50_000, "train_1m_s_max": 300.0}
TRAIN_EVENTS = 1_000_000
USERS = 120


def _percentiles(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples) * 1e3  # ms
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
    }


def _days_for(events: int, users: int) -> float:
    # The generator makes ~190 events per user-day at these settings (attacks included); aim a
    # little high and report the real count.
    return max(1.0, events / (users * 180.0))


def _train(quick: bool) -> tuple[Any, dict[str, Any], Any]:
    users = 30 if quick else USERS
    days = 1.0 if quick else _days_for(TRAIN_EVENTS, users)
    config = TrainConfig(seed=1, days=days, users=users)
    train = build_dataset(1, days=days, users=users)
    val_days = 1.0 if quick else 14.0
    val = build_dataset(validation_seed(1), days=val_days, users=users)
    ensemble, fit_seconds = fit_ensemble(train, val, config)
    seconds = {
        "generate": train.seconds_generate + val.seconds_generate,
        "features": train.seconds_features + val.seconds_features,
        "fit": fit_seconds,
    }
    report = {
        "events": len(train.events),
        "validation_events": len(val.events),
        "days": days,
        "users": users,
        "seconds": seconds,
        "total_s": sum(seconds.values()),
    }
    return ensemble, report, config


def _single(ensemble: Any, quick: bool) -> dict[str, Any]:
    held_out = build_dataset(2, days=1.0, users=30 if quick else USERS)
    events = held_out.events[: 2_000 if quick else 30_000]
    scorer = EnsembleRiskScorer(ensemble, FeatureExtractor())
    for event in events[:200]:  # warm-up: lazy fast-path structures, caches
        scorer.assess(event)
    scorer = EnsembleRiskScorer(ensemble, FeatureExtractor())
    assess, vectors = [], []
    clock = time.perf_counter
    for event in events:
        start = clock()
        scorer.assess(event)
        assess.append(clock() - start)
    extractor = FeatureExtractor()
    features = []
    for event in events:
        start = clock()
        vectors.append(extractor.transform_one(event))
        features.append(clock() - start)
    model = []
    for vector in vectors:
        start = clock()
        ensemble.score_one(vector)
        model.append(clock() - start)
    sklearn = []
    for vector in vectors[: 200 if quick else 1_000]:
        start = clock()
        ensemble.risk(vector[None, :])  # scikit-learn's batch API, one row at a time
        sklearn.append(clock() - start)
    result: dict[str, Any] = {
        "events": len(events),
        "assess": _percentiles(assess),
        "features": _percentiles(features),
        "ensemble_fast_path": _percentiles(model),
        "ensemble_sklearn_per_call": _percentiles(sklearn),
    }
    result["sklearn_vs_fast_p50"] = (
        result["ensemble_sklearn_per_call"]["p50_ms"] / result["ensemble_fast_path"]["p50_ms"]
    )
    return result


def _batch(ensemble: Any, quick: bool) -> dict[str, Any]:
    data = build_dataset(3, days=1.0 if quick else 7.0, users=30 if quick else USERS)
    n = len(data.events)
    best_model = best_features = float("inf")
    for _ in range(1 if quick else 3):
        start = time.perf_counter()
        ensemble.risk(data.X)
        best_model = min(best_model, time.perf_counter() - start)
        start = time.perf_counter()
        FeatureExtractor().transform(data.events)
        best_features = min(best_features, time.perf_counter() - start)
    return {
        "events": n,
        "ensemble_events_per_s": n / best_model,
        "features_events_per_s": n / best_features,
        "end_to_end_events_per_s": n / (best_model + best_features),
    }


def run(quick: bool = False) -> dict[str, Any]:
    ensemble, training, _ = _train(quick)
    # Scoring budgets are per core: hold BLAS / OpenMP to one thread while measuring them.
    with threadpool_limits(limits=1):
        single = _single(ensemble, quick)
        batch = _batch(ensemble, quick)
    return {
        "benchmark": "security",
        "quick": quick,
        "fusion": ensemble.fusion,
        "training": training,
        "single": single,
        "batch": batch,
        "goals": {
            "assess p99 <= 1 ms": single["assess"]["p99_ms"] <= GOALS["assess_p99_ms_max"],
            "batch >= 50,000 events/s (ensemble)": (
                batch["ensemble_events_per_s"] >= GOALS["batch_events_per_s_min"]
            ),
            "batch >= 50,000 events/s (with features)": (
                batch["end_to_end_events_per_s"] >= GOALS["batch_events_per_s_min"]
            ),
            "training on 1 M events < 5 min": (
                None
                if quick or training["events"] < TRAIN_EVENTS
                else training["total_s"] < GOALS["train_1m_s_max"]
            ),
        },
    }


def render(result: dict[str, Any]) -> str:
    """The ensemble's table and, when measured, the record page by scoring mode."""
    parts = []
    if "goals" in result:
        parts.append(_render_ensemble(result))
    if "record_page" in result:
        from carevault.bench import scoring_path

        parts.append(scoring_path.render(result["record_page"]))
    return "\n\n".join(parts)


def _render_ensemble(result: dict[str, Any]) -> str:
    s, b, t = result["single"], result["batch"], result["training"]

    def ms(part: dict[str, float]) -> str:
        return f"{part['p50_ms'] * 1e3:.0f} / {part['p99_ms'] * 1e3:.0f} us"

    rows = [
        ["assess(event): features + ensemble + rules", ms(s["assess"]), "goal p99 <= 1000 us"],
        ["  feature extraction alone", ms(s["features"]), ""],
        ["  ensemble, fast path", ms(s["ensemble_fast_path"]), ""],
        ["  ensemble, scikit-learn per call", ms(s["ensemble_sklearn_per_call"]), "baseline"],
        ["  scikit-learn / fast path (p50)", f"{s['sklearn_vs_fast_p50']:.0f}x", ""],
        [
            "batch: ensemble on features, 1 core",
            f"{b['ensemble_events_per_s']:,.0f} ev/s",
            ">= 50k",
        ],
        ["batch: feature extraction, 1 core", f"{b['features_events_per_s']:,.0f} ev/s", ""],
        ["batch: end to end, 1 core", f"{b['end_to_end_events_per_s']:,.0f} ev/s", ">= 50k"],
        [
            f"training: {t['events']:,} events (+{t['validation_events']:,} validation)",
            f"{t['total_s']:.0f} s",
            "goal < 300 s for 1 M",
        ],
        [
            "  generate / features / fit",
            f"{t['seconds']['generate']:.0f} / {t['seconds']['features']:.0f} / "
            f"{t['seconds']['fit']:.0f} s",
            "",
        ],
    ]
    goals = ", ".join(
        f"{name}: {'n/a' if ok is None else ('met' if ok else 'MISSED')}"
        for name, ok in result["goals"].items()
    )
    note = " (quick run: small sizes, for smoke tests only)" if result["quick"] else ""
    header = ["measure", "p50 / p99 or value", "note"]
    return (
        f"carevault bench security{note}, fusion {result['fusion']}\n"
        f"{format_table(header, rows)}\n{goals}"
    )
