"""Training, measuring and sealing the diagnosis models (``carevault model train|seal``).

Each model is measured on the held-out quarter of the data set (never seen in training):
accuracy, ROC-AUC, Brier score and expected calibration error. A model that misses the quality
bar is not sealed, so the service can never be handed a model worse than the bar, whether it
was trained here or imported from elsewhere.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
from numpy.typing import NDArray
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline

from carevault.modelstore.store import ModelStore

from . import dataset, extra_data, models, privacy, private_model
from .sealed import MODEL_NAMES, TRUSTED_TYPES, FeatureRanges, check_pipeline

ECE_BINS = 10
# An imported model file larger than this is refused before it is parsed (the forest sealed
# here is about 5 MB uncompressed).
MAX_IMPORT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class QualityBar:
    """The least a diagnosis model must reach on the held-out cases to be sealed.

    Both models clear it with room on every split tried (seeds 0-4: accuracy >= 0.93, ROC-AUC
    >= 0.966, Brier <= 0.054, ECE <= 0.048), so it refuses broken or poisoned models, not
    unlucky splits.
    """

    min_accuracy: float = 0.90
    min_roc_auc: float = 0.95
    max_brier: float = 0.08
    max_ece: float = 0.10

    def failures(self, metrics: Mapping[str, float]) -> list[str]:
        found = []
        if metrics["accuracy"] < self.min_accuracy:
            found.append(f"accuracy {metrics['accuracy']:.3f} < {self.min_accuracy}")
        if metrics["roc_auc"] < self.min_roc_auc:
            found.append(f"ROC-AUC {metrics['roc_auc']:.3f} < {self.min_roc_auc}")
        if metrics["brier"] > self.max_brier:
            found.append(f"Brier score {metrics['brier']:.3f} > {self.max_brier}")
        if metrics["ece"] > self.max_ece:
            found.append(f"ECE {metrics['ece']:.3f} > {self.max_ece}")
        return found

    def as_dict(self) -> dict[str, float]:
        return {
            "min_accuracy": self.min_accuracy,
            "min_roc_auc": self.min_roc_auc,
            "max_brier": self.max_brier,
            "max_ece": self.max_ece,
        }


DEFAULT_BAR = QualityBar()


def expected_calibration_error(
    y: NDArray[np.int64], p: NDArray[np.float64], bins: int = ECE_BINS
) -> float:
    """ECE of P(malignant): cases binned on [0, 1] into ``bins`` equal-width bins; the mean
    |predicted - observed malignant rate| per bin, weighted by the bin's share of cases (the
    reliability diagram's gaps, as in sklearn's ``calibration_curve``)."""
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if len(y) == 0 or len(y) != len(p):
        raise ValueError("labels and probabilities must be non-empty and of the same length")
    index = np.minimum((p * bins).astype(np.int64), bins - 1)  # p = 1.0 goes in the top bin
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.sum() * abs(float(p[members].mean()) - float(y[members].mean()))
    return total / len(y)


def measure(pipeline: Pipeline, split: dataset.Split) -> dict[str, float]:
    """Held-out accuracy, ROC-AUC, Brier score and ECE (10 bins) of a fitted pipeline."""
    p = pipeline.predict_proba(split.X_test)[:, 1]
    y = split.y_test
    return {
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "roc_auc": float(roc_auc_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "test_cases": float(len(y)),
    }


@dataclass
class ModelReport:
    kind: str
    name: str
    metrics: dict[str, float]
    failures: list[str]
    seconds: float
    version: int | None = None
    source: str = "trained"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sealed(self) -> bool:
        return self.version is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.name,
            "metrics": self.metrics,
            "passed": not self.failures,
            "failures": self.failures,
            "sealed_version": self.version,
            "train_seconds": round(self.seconds, 3),
            "source": self.source,
            **self.extra,
        }


def _metadata(
    kind: str, split: dataset.Split, metrics: Mapping[str, float], bar: QualityBar, source: str
) -> dict[str, Any]:
    # From the trusted split only: rows added by --extra-data (screened or not) cannot widen
    # the ranges the service accepts.
    ranges = FeatureRanges.from_training(split.X_train, split.feature_names)
    return {
        "kind": kind,
        "dataset": dataset.DATASET,
        "seed": split.seed,
        "test_fraction": dataset.TEST_FRACTION,
        "feature_names": list(split.feature_names),
        **ranges.as_metadata(),
        "metrics": dict(metrics),
        "quality_bar": bar.as_dict(),
        "source": source,
    }


def _seal(
    store: ModelStore,
    report: ModelReport,
    pipeline: Pipeline,
    split: dataset.Split,
    bar: QualityBar,
) -> None:
    if report.failures:
        return
    metadata = _metadata(report.kind, split, report.metrics, bar, report.source)
    metadata.update(report.extra)
    info = store.save(report.name, pipeline, trusted_types=TRUSTED_TYPES, metadata=metadata)
    report.version = info.version


@dataclass(frozen=True)
class Privacy:
    """Train the logistic model with (epsilon, delta)-differential privacy."""

    epsilon: float
    delta: float = privacy.DEFAULT_DELTA


def train(
    store: ModelStore,
    *,
    seed: int = dataset.DEFAULT_SEED,
    bar: QualityBar = DEFAULT_BAR,
    private: Privacy | None = None,
    extra: extra_data.ScreenSummary | None = None,
) -> list[ModelReport]:
    """Train both models on the split of ``seed``, measure them, seal those that clear ``bar``.

    ``private``: the logistic model is the differentially private one
    (:mod:`.private_model`); the forest has no private variant and is trained as usual.
    ``extra``: new rows with their screening result (:func:`.extra_data.screen` against this
    split's training rows); the kept rows are added to the training split, never to the
    held-out cases, which stay the measure.
    """
    split = dataset.load_split(seed)
    X, y = split.X_train, split.y_train
    training: dict[str, Any] = {"split_rows": len(y)}
    if extra is not None:
        X_kept, y_kept = extra.kept_rows()
        X = np.vstack([X, X_kept])
        y = np.concatenate([y, y_kept])
        training["extra_data"] = extra.as_dict()
    training["rows"] = len(y)
    reports = []
    for kind in models.KINDS:
        started = time.perf_counter()
        details: dict[str, Any] = {"training_data": training}
        if kind == models.LOGISTIC and private is not None:
            pipeline, details["privacy"] = private_model.fit(
                X, y, private.epsilon, delta=private.delta
            )
        else:
            pipeline = models.fit(kind, X, y, random_state=seed)
            if private is not None:
                details["privacy"] = None  # said in the report: this model is not private
        seconds = time.perf_counter() - started
        metrics = measure(pipeline, split)
        report = ModelReport(
            kind, MODEL_NAMES[kind], metrics, bar.failures(metrics), seconds, extra=details
        )
        _seal(store, report, pipeline, split, bar)
        reports.append(report)
    return reports


def screen_extra(
    rows: extra_data.ExtraRows, *, seed: int = dataset.DEFAULT_SEED, enabled: bool = True
) -> extra_data.ScreenSummary:
    """Screen new rows against the training split of ``seed``: the rows the models are
    trained on, which are trusted."""
    split = dataset.load_split(seed)
    return extra_data.screen(rows, (split.X_train, split.y_train), enabled=enabled)


def import_file(
    store: ModelStore,
    path: str | Path,
    *,
    seed: int = dataset.DEFAULT_SEED,
    bar: QualityBar = DEFAULT_BAR,
) -> ModelReport:
    """Seal a skops file trained elsewhere, once it has passed every check a model trained
    here passes: only trusted types, a diagnosis pipeline over the 30 features, and the quality
    bar on the held-out split of ``seed`` (which the file's trainer must not have trained on:
    train on ``dataset.load_split(seed).X_train``). ValueError says what is wrong."""
    source = Path(path)
    if source.stat().st_size > MAX_IMPORT_BYTES:
        raise ValueError(f"{source.name} is larger than {MAX_IMPORT_BYTES // 2**20} MB")
    data = source.read_bytes()
    try:
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    except Exception as exc:  # a damaged or non-skops file raises whatever its parser meets
        raise ValueError(f"{source.name} is not a skops file ({type(exc).__name__})") from None
    if untrusted:
        raise ValueError(f"{source.name} contains untrusted types {untrusted}: not sealed")
    try:
        obj = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as exc:
        raise ValueError(f"skops could not load {source.name} ({type(exc).__name__})") from None
    kind = check_pipeline(obj)
    assert isinstance(obj, Pipeline)
    split = dataset.load_split(seed)
    metrics = measure(obj, split)
    report = ModelReport(
        kind,
        MODEL_NAMES[kind],
        metrics,
        bar.failures(metrics),
        0.0,
        source="imported",
        extra={"source_sha256": hashlib.sha256(data).hexdigest()},
    )
    _seal(store, report, obj, split, bar)
    return report


def render(reports: list[ModelReport]) -> str:
    lines = [
        f"{'model':<20} {'accuracy':>8} {'ROC-AUC':>8} {'Brier':>7} {'ECE':>7}  result",
    ]
    for r in reports:
        m = r.metrics
        result = f"sealed v{r.version}" if r.sealed else "REFUSED: " + "; ".join(r.failures)
        lines.append(
            f"{r.name:<20} {m['accuracy']:>8.4f} {m['roc_auc']:>8.4f} {m['brier']:>7.4f} "
            f"{m['ece']:>7.4f}  {result}"
        )
    n = int(reports[0].metrics["test_cases"]) if reports else 0
    lines.append(f"held-out cases: {n}; ECE over {ECE_BINS} equal-width bins of P(malignant)")
    lines += _privacy_lines(reports)
    training = reports[0].extra.get("training_data") if reports else None
    if training and "extra_data" in training:
        lines += extra_data_lines(training["extra_data"])
    return "\n".join(lines)


def _privacy_lines(reports: list[ModelReport]) -> list[str]:
    lines = []
    for r in reports:
        if "privacy" not in r.extra:
            continue
        p = r.extra["privacy"]
        if p is None:
            lines.append(f"WARNING: {r.name} is not differentially private (no private variant)")
            continue
        lines += [
            f"{r.name}: ({p['epsilon']:g}, {p['delta']:g})-differentially private; C {p['C']:g}, "
            f"radius {p['radius']:g}, L2 sensitivity {p['l2_sensitivity']:g}, "
            f"noise sd {p['noise_scale']:.4g}",
            f"  covers: {p['covers']}",
            f"  does not cover: {p['does_not_cover']}",
        ]
    return lines


def extra_data_lines(summary: Mapping[str, Any]) -> list[str]:
    """The extra data's fate in words: counts only, never a row."""
    lines = [
        f"extra data {summary['file']}: {summary['rows']} rows, {summary['kept']} added to "
        f"training, {summary['dropped']} dropped"
    ]
    if not summary["screened"]:
        lines.append("WARNING: --no-screen: the extra rows were not screened for poison")
    else:
        fired = ", ".join(f"{name} {n}" for name, n in summary["dropped_by_check"].items())
        lines.append(f"  rows each screen check fired on (a row can fail several): {fired}")
    return lines
