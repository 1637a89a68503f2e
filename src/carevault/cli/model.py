"""``carevault model train | seal | verify | multiparty``: the diagnosis models (docs/models.md)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from carevault import config
from carevault.cli._common import (
    EXIT_FAILURE,
    CommandError,
    Commands,
    add_command,
    emit,
    model_store,
    positive,
    positive_number,
)


def cmd_model_train(args: argparse.Namespace) -> int:
    from carevault.modelguard import diagnosis_training, extra_data, privacy
    from carevault.modelstore.store import SealedModelError

    if args.delta is not None and args.private is None:
        raise CommandError("--delta needs --private EPSILON")
    if args.no_screen and args.extra_data is None:
        raise CommandError("--no-screen needs --extra-data FILE")
    private = None
    if args.private is not None:
        delta = privacy.DEFAULT_DELTA if args.delta is None else args.delta
        if not 0.0 < delta < 1.0:
            raise CommandError(f"--delta must be between 0 and 1, got {delta:g}")
        private = diagnosis_training.Privacy(args.private, delta)
    extra = None
    if args.extra_data is not None:
        # Read and screened before anything is trained: a bad file seals nothing.
        rows = extra_data.read_csv(args.extra_data)
        extra = diagnosis_training.screen_extra(rows, seed=args.seed, enabled=not args.no_screen)
    try:
        reports = diagnosis_training.train(
            model_store(), seed=args.seed, private=private, extra=extra
        )
    except SealedModelError as exc:
        raise CommandError(str(exc)) from None
    data = {
        "seed": args.seed,
        "quality_bar": diagnosis_training.DEFAULT_BAR.as_dict(),
        "models": [r.as_dict() for r in reports],
        "private": None if private is None else {"epsilon": private.epsilon, "delta": delta},
        "extra_data": None if extra is None else extra.as_dict(),
    }
    emit(args, data, diagnosis_training.render(reports))
    refused = [r for r in reports if not r.sealed]
    if refused:
        raise CommandError(
            "; ".join(
                f"{r.name} not sealed: {', '.join(r.failures)}"
                + (
                    f" (differentially private at epsilon {private.epsilon:g}: a larger "
                    "epsilon adds less noise)"
                    if private is not None and r.extra.get("privacy")
                    else ""
                )
                for r in refused
            )
        )
    return 0


def cmd_model_seal(args: argparse.Namespace) -> int:
    from carevault.modelguard import diagnosis_training
    from carevault.modelstore.store import SealedModelError

    try:
        report = diagnosis_training.import_file(model_store(), args.path, seed=args.seed)
    except SealedModelError as exc:
        raise CommandError(str(exc)) from None
    emit(args, report.as_dict(), diagnosis_training.render([report]))
    if not report.sealed:
        raise CommandError(f"{report.name} not sealed: {', '.join(report.failures)}")
    return 0


def cmd_model_multiparty(args: argparse.Namespace) -> int:
    """Score held-out cases with the sealed logistic model among three local MPyC parties, beside
    the plaintext model: the multi-party demo (docs/models-multiparty.md)."""
    from carevault.modelguard import dataset, multiparty, sealed
    from carevault.modelguard.models import LOGISTIC, linear_form
    from carevault.modelguard.multiparty_launcher import LocalParties
    from carevault.modelstore.store import SealedModelError

    split = dataset.load_split()
    if not 1 <= args.cases <= len(split.X_test):
        raise CommandError(f"--cases must be between 1 and {len(split.X_test)}")
    try:
        served = sealed.load(model_store(), LOGISTIC)
    except SealedModelError as exc:
        raise CommandError(str(exc)) from None
    form = linear_form(served.pipeline)
    cases = split.X_test[: args.cases]
    plain = served.pipeline.predict(cases) if args.reveal == "label" else form.decision(cases)
    timings: list[float] = []
    values: list[float] = []
    try:
        with LocalParties(multiparty.deal_model(form)) as parties:
            started = parties.start_seconds
            for x in cases:
                begin = time.perf_counter()
                values.append(float(parties.predict(x, args.reveal)[0]))
                timings.append((time.perf_counter() - begin) * 1e3)
    except multiparty.MultipartyError as exc:
        raise CommandError(f"multi-party scoring failed: {exc}") from None
    if args.reveal == "label":
        agree = sum(int(v == p) for v, p in zip(values, plain, strict=True))
    else:
        agree = sum(int(abs(v - p) < 1e-4) for v, p in zip(values, plain, strict=True))
    timings.sort()
    data = {
        "model": served.name,
        "version": served.version,
        "reveal": args.reveal,
        "cases": args.cases,
        "agree": agree,
        "start_seconds": round(started, 3),
        "p50_ms": round(timings[len(timings) // 2], 2),
        "max_ms": round(timings[-1], 2),
    }
    text = (
        f"{served.name} v{served.version} among 3 local parties (started in {started:.2f} s): "
        f"{agree}/{args.cases} {args.reveal}s agree with the plaintext model; "
        f"p50 {data['p50_ms']} ms, max {data['max_ms']} ms per prediction"
    )
    emit(args, data, text)
    return 0 if agree == args.cases else EXIT_FAILURE


def cmd_model_verify(args: argparse.Namespace) -> int:
    from carevault.modelguard import sealed

    root = config.data_dir() / "models"
    if not any((root / name).is_dir() for name in sealed.MODEL_NAMES.values()):
        # Said before opening the store, which would create a dev master key as a side effect.
        raise CommandError(f"no sealed diagnosis model in {root}: run `carevault model train`")
    store = model_store()
    report = sealed.verify_all(store)
    lines = []
    for entry in report["models"]:
        versions = ", ".join(
            f"v{v['version']} {'ok' if v['ok'] else 'REFUSED'}" for v in entry["versions"]
        )
        state = f"serving v{entry['current_version']}" if entry["ok"] else "FAILED"
        lines.append(f"{entry['model']}: {state} ({versions or 'no versions'})")
        lines += [f"  {error}" for error in entry["errors"]]
        if entry["ok"] and entry["current_version"] is not None:
            lines += _training_notes(entry, store)
    emit(args, report, "\n".join(lines))
    if not report["ok"]:
        first = next(e["errors"][0] for e in report["models"] if e["errors"])
        raise CommandError(first)
    return 0


def _training_notes(entry: dict[str, Any], store: Any) -> list[str]:
    """The served version's privacy and extra-data facts from its signed manifest (added to
    ``entry`` for --json). Floats come back as the manifest's short decimal text."""
    metadata = store.inspect(entry["model"], entry["current_version"]).manifest["metadata"]
    lines = []
    entry["privacy"] = metadata.get("privacy")
    if entry["privacy"]:
        p = entry["privacy"]
        lines += [
            f"  differentially private: epsilon {p['epsilon']}, delta {p['delta']}, C {p['C']}, "
            f"radius {p['radius']}, noise sd {p['noise_scale']}",
            f"  covers: {p['covers']}",
            f"  does not cover: {p['does_not_cover']}",
        ]
    elif "privacy" in metadata:
        lines.append("  not differentially private (trained in a --private run)")
    extra = metadata.get("training_data", {}).get("extra_data")
    entry["extra_data"] = extra
    if extra:
        screened = "screened" if extra["screened"] else "NOT screened: --no-screen"
        lines.append(
            f"  trained with {extra['kept']} of {extra['rows']} extra rows from "
            f"{extra['file']} ({screened})"
        )
    return lines


def register(commands: Commands) -> None:
    model = commands.add_parser(
        "model", help="the diagnosis models: train, seal, verify, multiparty"
    )
    actions = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    model_train = add_command(
        actions,
        "train",
        cmd_model_train,
        "train the logistic and forest diagnosis models, print their held-out accuracy, "
        "ROC-AUC, Brier score and calibration error, and seal those that clear the quality bar "
        "into the data directory (exit 1 if one does not)",
    )
    model_train.add_argument(
        "--seed", type=int, default=0, help="train/test split and model seed (default 0)"
    )
    model_train.add_argument(
        "--private",
        type=positive_number,
        metavar="EPSILON",
        help="train the logistic model with (EPSILON, delta)-differential privacy (OpenDP "
        "output perturbation); refused like any model if it misses the quality bar",
    )
    model_train.add_argument(
        "--delta",
        type=float,
        metavar="D",
        help="delta of --private (default 1e-05)",
    )
    model_train.add_argument(
        "--extra-data",
        metavar="FILE.csv",
        help="add labelled rows (header: the 30 feature names and 'label', 1 = malignant) to "
        "training, after the poison screen drops suspicious ones",
    )
    model_train.add_argument(
        "--no-screen",
        action="store_true",
        help="add every --extra-data row without screening it for poison (warned in the report)",
    )
    model_seal = add_command(
        actions,
        "seal",
        cmd_model_seal,
        "seal a diagnosis pipeline trained elsewhere (a skops file): refused unless it holds "
        "only trusted types, is a StandardScaler + logistic or forest pipeline over the 30 "
        "features and clears the quality bar on the held-out split",
    )
    model_seal.add_argument("path", help="the .skops file")
    model_seal.add_argument(
        "--seed",
        type=int,
        default=0,
        help="split whose held-out cases measure it (the file must not have been trained on "
        "them; default 0)",
    )
    add_command(
        actions,
        "verify",
        cmd_model_verify,
        "check every sealed diagnosis model (signature, digests, decryption, trusted types, "
        "high-water mark against rollback); exit 1 on any failure",
    )

    mpc = add_command(
        actions,
        "multiparty",
        cmd_model_multiparty,
        "score held-out cases with the sealed logistic model among three local MPyC parties "
        "(hospital, lab, research partner) beside the plaintext model",
    )
    mpc.add_argument("--cases", type=positive, default=10, help="held-out cases (1-143)")
    mpc.add_argument("--reveal", choices=["label", "score"], default="label")
