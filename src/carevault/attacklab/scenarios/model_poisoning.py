"""Poisoned retraining data through the one retraining path there is:
``carevault model train --extra-data FILE.csv`` (modelguard/extra_data.py, poisoning.py).

The attacker slips labelled rows into a batch of "new cases" handed to the officer for
retraining: the targeted boundary poison (malignant cases nearest the decision boundary,
nudged and relabelled benign, to teach the model to miss cancers) and, in full runs, plain
label flips. It runs on a copy of the data directory (Files.copy), so the live model is
untouched. The referee measures the retrained logistic model's accuracy on the held-out split
against the clean recipe's (the project's training recipe, fitted here: what `model train`
seals with no extra data).

Held: with the screen on (the default), every poisoned retraining either is refused or leaves
the logistic model within 1 point of the clean accuracy (the tolerance docs/models-training.md
states: "within one point of a clean batch"). Full runs also train with ``--no-screen`` to show
what the poison does without the defence (reported, not judged).
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.lab import Files
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.modelguard.poisoning import inject

from . import _modeltools as tools

TOLERANCE_POINTS = 1.0
BATCH = 120
RATE = 0.25


def write_batch(path: Path, names: tuple[str, ...], xs: np.ndarray, y: np.ndarray) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*names, "label"])
        for row, label in zip(xs, y, strict=True):
            writer.writerow([repr(float(v)) for v in row] + [int(label)])


def _train(copy: Files, batch: Path, *extra: str) -> dict[str, Any]:
    done = copy.cli("model", "train", "--extra-data", str(batch), *extra, "--json", check=False)
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0]}
    return result


def _logistic(result: dict[str, Any]) -> dict[str, Any]:
    return next((m for m in result.get("models", []) if m.get("kind") == "logistic"), {})


def run(ctx: Context) -> Outcome:
    files = ctx.need_files()
    know = tools.knowledge()
    split = know.split
    clean = float(np.mean(know.recipe.predict(split.X_test) == split.y_test))
    kinds = ["boundary"] if ctx.quick else ["boundary", "label_flip"]
    work = Path(tempfile.mkdtemp(prefix="cv-poison-"))
    findings = [f"clean recipe's logistic accuracy on the held-out split: {clean:.1%}"]
    held = True
    metrics: dict[str, Any] = {"clean_accuracy": round(clean, 4), "runs": []}
    try:
        copy = files.copy(work / "data")
        for kind in kinds:
            base = split.X_train[-BATCH:], split.y_train[-BATCH:]
            poisoned = inject(base[0], base[1], kind, RATE, random_state=ctx.seed)
            batch = work / f"{kind}.csv"
            write_batch(batch, split.feature_names, poisoned.X, poisoned.y)
            variants = [("screened", ())] + (
                [] if ctx.quick else [("unscreened", ("--no-screen",))]
            )
            for label, flags in variants:
                result = _train(copy, batch, *flags)
                model = _logistic(result)
                screen = result.get("extra_data") or {}
                accuracy = model.get("metrics", {}).get("accuracy")
                sealed = bool(model.get("sealed_version"))
                entry = {
                    "poison": kind,
                    "variant": label,
                    "rows": int(poisoned.is_poison.size),
                    "poison_rows": int(poisoned.is_poison.sum()),
                    "dropped": screen.get("dropped"),
                    "accuracy": accuracy,
                    "sealed": sealed,
                    "error": result.get("error"),
                }
                metrics["runs"].append(entry)
                if accuracy is None:
                    findings.append(f"{kind}, {label}: no model report ({result.get('error')})")
                    if label == "screened":
                        held = False
                    continue
                drop = (clean - float(accuracy)) * 100
                findings.append(
                    f"{kind} poison ({entry['poison_rows']} of {entry['rows']} rows), {label}: "
                    f"{screen.get('dropped', 0)} rows dropped; logistic accuracy "
                    f"{float(accuracy):.1%} ({-drop:+.1f} points), "
                    + ("sealed" if sealed else "refused by the quality bar")
                )
                if label == "screened" and sealed and drop > TOLERANCE_POINTS:
                    held = False
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Outcome(
        held=held, defences=["poisoning defence"], lost=0, findings=findings, metrics=metrics
    )


SCENARIO = Scenario(
    name="model.poisoning",
    category="models",
    attacks="poisoned rows (targeted boundary poison; label flips in full runs) in the extra "
    "data of `carevault model train --extra-data`, on a copy of the data directory",
    held_means="with the screen on, the retrained logistic model is refused or stays within 1 "
    "point of the clean recipe's held-out accuracy",
    bounds=Bounds(requests=0, seconds=240),
    quick_bounds=Bounds(requests=0, seconds=60),
    run=run,
    needs_files=True,
)
