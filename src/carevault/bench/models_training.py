"""``carevault bench models`` (training-time part): the defences of issue 7, "Training-time
defences", measured on the real data set.

* poisoning: for each poison kind and rate, the screen's precision and recall *on the injected
  poison* (the trusted base is one half of a training split, the retraining batch the other half
  with poison added), and the test accuracy and malignant recall of the logistic model trained on
  trusted + poisoned batch vs trusted + screened batch (and the clean batch, for reference); the
  share of a clean batch the screen drops;
* differential privacy: test accuracy of the output-perturbed logistic model per epsilon over
  several splits and noise draws (mean +- sd), beside the unperturbed model of the same form and
  the served (non-private) logistic pipeline;
* membership inference: held-out advantage of the loss-threshold attack against the overfit
  forest (positive control), the served logistic pipeline and the DP model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from carevault.modelguard import membership, models, poisoning, privacy
from carevault.modelguard.dataset import Split, load_split
from carevault.platform.tables import format_table

RATES = (0.05, 0.1, 0.2)
EPSILONS: tuple[float | None, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, None)
MEMBERSHIP_EPSILONS = (1.0, 8.0)


def _mean_sd(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values))}


def _scores(model: Any, split: Split) -> tuple[float, float]:
    """Test accuracy and recall on malignant cases (the cancers the model must not miss)."""
    predicted = np.asarray(model.predict(split.X_test))
    malignant = split.y_test == 1
    return (
        float(np.mean(predicted == split.y_test)),
        float(np.mean(predicted[malignant] == 1)),
    )


def _train_on(
    trusted: tuple[NDArray[np.float64], NDArray[np.int64]],
    features: NDArray[np.float64],
    labels: NDArray[np.int64],
    split: Split,
) -> tuple[float, float]:
    """Scores of the logistic model trained on the trusted rows plus a retraining batch."""
    joined = np.vstack([trusted[0], features]), np.concatenate([trusted[1], labels])
    return _scores(models.fit(models.LOGISTIC, *joined), split)


def _poisoning(seeds: tuple[int, ...], rates: tuple[float, ...]) -> dict[str, Any]:
    cells: dict[tuple[str, float], dict[str, list[float]]] = {}
    clean_dropped: list[float] = []
    clean_scores: list[tuple[float, float]] = []
    for seed in seeds:
        split = load_split(seed)
        half = len(split.y_train) // 2  # the split is shuffled and stratified already
        trusted = (split.X_train[:half], split.y_train[:half])
        new_x, new_y = split.X_train[half:], split.y_train[half:]
        clean_dropped.append(float(1.0 - poisoning.screen(new_x, new_y, trusted).kept.mean()))
        clean_scores.append(_train_on(trusted, new_x, new_y, split))
        for kind in poisoning.POISON_KINDS:
            for rate in rates:
                batch = poisoning.inject(new_x, new_y, kind, rate, random_state=seed)
                report = poisoning.screen(batch.X, batch.y, trusted)
                precision, recall = poisoning.precision_recall(report, batch.is_poison)
                kept = report.kept
                poisoned = _train_on(trusted, batch.X, batch.y, split)
                screened = _train_on(trusted, batch.X[kept], batch.y[kept], split)
                cell = cells.setdefault((kind, rate), {})
                for name, value in (
                    ("precision", precision),
                    ("recall", recall),
                    ("poison_rows", float(batch.is_poison.sum())),
                    ("flagged_rows", float((~kept).sum())),
                    ("batch_rows", float(len(kept))),
                    ("accuracy_poisoned", poisoned[0]),
                    ("accuracy_screened", screened[0]),
                    ("malignant_recall_poisoned", poisoned[1]),
                    ("malignant_recall_screened", screened[1]),
                ):
                    cell.setdefault(name, []).append(value)
    rows = [
        {"kind": kind, "rate": rate, **{name: _mean_sd(v) for name, v in cell.items()}}
        for (kind, rate), cell in cells.items()
    ]
    return {
        "seeds": list(seeds),
        "clean_batch_rows_dropped": _mean_sd(clean_dropped),
        "clean_batch_accuracy": _mean_sd([s[0] for s in clean_scores]),
        "clean_batch_malignant_recall": _mean_sd([s[1] for s in clean_scores]),
        "rows": rows,
    }


def _privacy(seeds: tuple[int, ...], draws: int) -> dict[str, Any]:
    splits = [load_split(seed) for seed in seeds]
    baseline = [_scores(models.fit(models.LOGISTIC, s.X_train, s.y_train), s)[0] for s in splits]
    rows = []
    for eps in EPSILONS:
        scores: list[float] = []
        scale = 0.0
        for split in splits:
            # The unperturbed model is deterministic: one fit is all there is to measure.
            for _ in range(draws if eps is not None else 1):
                model = privacy.fit_private_logistic(split.X_train, split.y_train, eps)
                scores.append(model.score(split.X_test, split.y_test))
                scale = model.noise_scale
        rows.append(
            {
                "epsilon": eps,  # None: no noise (JSON has no infinity)
                "noise_scale": scale,
                "runs": len(scores),
                "accuracy": _mean_sd(scores),
            }
        )
    return {
        "seeds": list(seeds),
        "draws_per_split": draws,
        "delta": privacy.DEFAULT_DELTA,
        "C": privacy.DEFAULT_C,
        "radius": privacy.DEFAULT_RADIUS,
        "sensitivity": privacy.l2_sensitivity(privacy.DEFAULT_C),
        "served_logistic_accuracy": _mean_sd(baseline),
        "rows": rows,
    }


def _membership(seeds: tuple[int, ...]) -> dict[str, Any]:
    results: dict[str, dict[str, list[float]]] = {}

    def record(name: str, model: membership.ProbabilisticModel, split: Split) -> None:
        r = membership.measure(
            model, split.X_train, split.y_train, split.X_test, split.y_test, random_state=0
        )
        entry = results.setdefault(name, {})
        for key, value in (
            ("advantage", r.advantage),
            ("train_accuracy", r.train_accuracy),
            ("test_accuracy", r.test_accuracy),
        ):
            entry.setdefault(key, []).append(value)

    for seed in seeds:
        split = load_split(seed)
        record(
            "overfit forest (control)",
            membership.overfit_control(split.X_train, split.y_train, random_state=seed),
            split,
        )
        record("served logistic", models.fit(models.LOGISTIC, split.X_train, split.y_train), split)
        for eps in MEMBERSHIP_EPSILONS:
            model = privacy.fit_private_logistic(split.X_train, split.y_train, eps)
            record(f"DP logistic, epsilon {eps:g}", model, split)
    return {
        "seeds": list(seeds),
        "models": [
            {"model": name, **{key: _mean_sd(v) for key, v in entry.items()}}
            for name, entry in results.items()
        ],
    }


# The screen's threshold and the DP model's C and radius were chosen on splits 0-4; the figures
# come from other splits (of the same 569 cases, so this is only partly held out).
FIRST_REPORTED_SPLIT = 5


def run(quick: bool = False) -> dict[str, Any]:
    first = FIRST_REPORTED_SPLIT
    seeds = (first, first + 1) if quick else tuple(range(first, first + 10))
    # Accuracy figures only, no timings; one BLAS thread keeps the shared machine usable.
    with threadpool_limits(limits=1):
        poison = _poisoning(seeds[:1] if quick else seeds[:5], (0.1,) if quick else RATES)
        dp_table = _privacy(seeds, 1 if quick else 5)
        leak = _membership(seeds)
    control = leak["models"][0]["advantage"]["mean"]
    others = [m["advantage"]["mean"] for m in leak["models"][1:]]
    return {
        "benchmark": "models-training",
        "quick": quick,
        "poisoning": poison,
        "privacy": dp_table,
        "membership": leak,
        "checks": {
            "control leaks clearly (advantage > 0.3)": control > 0.3,
            "logistic and DP models leak little (|advantage| < 0.1)": all(
                abs(a) < 0.1 for a in others
            ),
        },
    }


def _pm(part: dict[str, float], fmt: str = ".3f") -> str:
    return f"{part['mean']:{fmt}} +- {part['sd']:{fmt}}"


def render(result: dict[str, Any]) -> str:
    p, d, m = result["poisoning"], result["privacy"], result["membership"]
    poison_rows = [
        [
            row["kind"],
            f"{row['rate']:.0%}",
            f"{row['poison_rows']['mean']:.0f} / {row['batch_rows']['mean']:.0f}",
            f"{row['flagged_rows']['mean']:.1f}",
            _pm(row["precision"], ".2f"),
            _pm(row["recall"], ".2f"),
            f"{row['accuracy_poisoned']['mean']:.3f} -> {row['accuracy_screened']['mean']:.3f}",
            f"{row['malignant_recall_poisoned']['mean']:.3f} -> "
            f"{row['malignant_recall_screened']['mean']:.3f}",
        ]
        for row in p["rows"]
    ]
    poison_header = [
        "poison",
        "rate",
        "poison/batch",
        "flagged",
        "precision",
        "recall",
        "accuracy pois.->screened",
        "malignant recall p.->s.",
    ]
    dp_rows = [
        [
            "none (exact)" if row["epsilon"] is None else f"{row['epsilon']:g}",
            f"{row['noise_scale']:.4f}",
            str(row["runs"]),
            _pm(row["accuracy"]),
        ]
        for row in d["rows"]
    ]
    dp_rows.append(
        ["served logistic (C=1)", "-", str(len(d["seeds"])), _pm(d["served_logistic_accuracy"])]
    )
    leak_rows = [
        [
            row["model"],
            _pm(row["advantage"]),
            f"{row['train_accuracy']['mean']:.3f}",
            f"{row['test_accuracy']['mean']:.3f}",
        ]
        for row in m["models"]
    ]
    note = " (quick run: small sizes, for smoke tests only)" if result["quick"] else ""
    checks = ", ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in result["checks"].items())
    return "\n".join(
        [
            f"carevault bench models (training-time defences){note}",
            "",
            f"Poison screening, logistic model, splits {p['seeds']} (mean over splits); "
            f"a clean batch loses {_pm(p['clean_batch_rows_dropped'])} of its rows, "
            f"clean-batch accuracy {_pm(p['clean_batch_accuracy'])}, "
            f"malignant recall {_pm(p['clean_batch_malignant_recall'])}",
            format_table(poison_header, poison_rows),
            "",
            f"DP logistic regression (output perturbation, OpenDP Gaussian), delta {d['delta']:g},"
            f" C {d['C']:g}, radius {d['radius']:g}, L2 sensitivity {d['sensitivity']:g}; "
            f"splits {d['seeds'][0]}-{d['seeds'][-1]} x {d['draws_per_split']} noise draws",
            format_table(["epsilon", "noise sd", "runs", "test accuracy"], dp_rows),
            "",
            f"Membership inference (held-out loss threshold), splits {m['seeds'][0]}-"
            f"{m['seeds'][-1]}",
            format_table(["model", "advantage (TPR-FPR)", "train acc", "test acc"], leak_rows),
            "",
            checks,
        ]
    )
