"""``carevault demo``: the demo data, the demo's models, and the server (``make run``)."""

from __future__ import annotations

import argparse
import secrets

from carevault import config
from carevault.cli._common import CommandError, Commands, add_command, emit, model_store, positive
from carevault.cli._django import django_setup, migrate
from carevault.cli.serve import exec_gunicorn


def _demo_password(given: str | None) -> str:
    """The demo password: given, or created once per data directory (never in the repo)."""
    from carevault.platform.files import atomic_write_bytes

    if given:
        return given
    path = config.data_dir() / "demo-password"
    if not path.exists():
        atomic_write_bytes(path, f"demo-{secrets.token_urlsafe(9)}".encode())
    return path.read_text().strip()


def cmd_demo(args: argparse.Namespace) -> int:
    django_setup()
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    from carevault.web import demo

    password = _demo_password(args.password)
    try:
        validate_password(password)
    except ValidationError as exc:
        raise CommandError("the demo password is too weak: " + " ".join(exc.messages)) from None
    migrate()
    if args.seed_only and args.prepare:
        raise CommandError("--seed-only and --prepare exclude each other")
    if not args.seed_only:
        # Before seeding, so the demo's records are already encrypted the way the policy picks.
        _ensure_policy()
    seeded = not demo.is_seeded()
    if seeded:
        from carevault.web.audit import sealing

        demo.seed(password)
        sealing.seal()  # the seeded log is sealed and anchored outside the database at once
    users = [u for u, *_ in demo.STAFF] + [p.username for p in demo.PATIENTS]
    data = {"seeded": seeded, "users": users, "password": None if args.password else password}
    lines = [
        ("created the demo data" if seeded else "demo data already present; left as it is"),
        f"demo logins: {', '.join(users)}",
        "password: " + ("the one you gave" if args.password else password),
    ]
    emit(args, data, "\n".join(lines))
    if args.seed_only:
        return 0
    _ensure_diagnosis_models()
    _ensure_risk_model()
    if args.prepare:
        return 0
    return exec_gunicorn(args.host, args.port, workers=1)


def _ensure_policy() -> None:
    """The demo's adaptive encryption policy (about 5 s), trained once, on the first start.
    Without it every write gets the strongest suite: safe, but the demo would show no choice."""
    from carevault.security.policy import MODEL_NAME
    from carevault.security.policy_training import train as train_policy

    if (config.data_dir() / "models" / MODEL_NAME).is_dir():
        return
    print("training the encryption policy (first start only)...", flush=True)
    report = train_policy(model_store(), seed=0)
    print(
        f"sealed {MODEL_NAME} v{report.get('version', '?')} "
        "(retrain: carevault security train-policy; compare: carevault bench policy)",
        flush=True,
    )


def _ensure_diagnosis_models() -> None:
    """The diagnosis models the doctors' assistant serves (a few seconds), trained and sealed
    once, on the demo's first start."""
    from carevault.modelguard import diagnosis_training

    if (config.data_dir() / "models" / "diagnosis-logistic").is_dir():
        return
    print("training the diagnosis models (first start only)...", flush=True)
    reports = diagnosis_training.train(model_store())
    print(
        "; ".join(f"{r.name} v{r.version}: accuracy {r.metrics['accuracy']:.3f}" for r in reports)
        + " (retrain: carevault model train; check: carevault model verify)",
        flush=True,
    )


def _ensure_risk_model() -> None:
    """The demo's threat-detection model: smaller than `carevault security train`'s default
    (about 20 s on two cores instead of a minute), trained once, on the demo's first start."""
    from carevault.security.baseline import latest_model_version

    if latest_model_version(config.data_dir()):
        return
    from carevault.security import training

    print("training the threat-detection ensemble (first start only)...", flush=True)
    demo_config = training.TrainConfig(seed=1, days=3.0, users=60)
    report = training.train(demo_config, model_store())
    seconds = sum(report["seconds"].values())
    print(
        f"sealed {report['model']} v{report['version']} in {seconds:.0f} s "
        "(retrain: carevault security train; check: carevault security evaluate)",
        flush=True,
    )


def register(commands: Commands) -> None:
    demo = add_command(commands, "demo", cmd_demo, "create the demo data and serve it (make run)")
    demo.add_argument("--seed-only", action="store_true", help="create the data, do not serve")
    demo.add_argument(
        "--prepare",
        action="store_true",
        help="create the data and train the demo's models, do not serve (then: carevault serve)",
    )
    demo.add_argument("--password", help="password of every demo user (default: generated)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=positive, default=8000)
