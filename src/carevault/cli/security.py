"""``carevault security ...``: the AI threat detection (train, evaluate, record-day), the
adaptive encryption policy (train-policy), and the officer's way back in (status, incidents,
activity, unblock, lift, lift-floor; the work is in web/securitycore/operator.py)."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from carevault.cli._common import (
    CommandError,
    Commands,
    add_command,
    emit,
    model_store,
    positive,
    positive_number,
)
from carevault.cli._django import django_setup, require_database

# -- the officer's way back in ---------------------------------------------------------------


def _operator() -> Any:
    django_setup()
    require_database()
    from carevault.web.securitycore import operator

    return operator


def _operator_done(args: argparse.Namespace, run: Callable[[], Any]) -> int:
    operator = _operator()
    try:
        done = run()
    except operator.OperatorError as exc:
        raise CommandError(str(exc)) from None
    emit(args, done.facts, done.message)
    return 0


def cmd_security_status(args: argparse.Namespace) -> int:
    operator = _operator()
    facts = operator.status()
    emit(args, facts, operator.render_status(facts))
    return 0


def cmd_security_incidents(args: argparse.Namespace) -> int:
    operator = _operator()
    listed = operator.incidents(limit=args.limit)
    emit(args, {"incidents": listed}, operator.render_incidents(listed))
    return 0


def cmd_security_activity(args: argparse.Namespace) -> int:
    try:
        since = dt.datetime.fromisoformat(args.since)
    except ValueError:
        raise CommandError(f"--since: not an ISO 8601 time: {args.since!r}") from None
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    operator = _operator()
    facts = operator.activity(since)
    text = (
        f"{len(facts['events'])} events and {len(facts['incidents'])} incidents since "
        f"{facts['since']}"
    )
    emit(args, facts, text)
    return 0


def cmd_security_unblock(args: argparse.Namespace) -> int:
    return _operator_done(args, lambda: _operator().unblock(args.address))


def cmd_security_lift(args: argparse.Namespace) -> int:
    return _operator_done(args, lambda: _operator().lift(args.username))


def cmd_security_lift_floor(args: argparse.Namespace) -> int:
    return _operator_done(args, lambda: _operator().lift_floor())


# -- train and evaluate the risk ensemble; the encryption policy ------------------------------


def cmd_security_train(args: argparse.Namespace) -> int:
    from carevault.modelstore.store import SealedModelError
    from carevault.security import training

    train_config = training.TrainConfig(
        seed=args.seed, days=args.days, users=args.users, fusion=args.fusion
    )
    try:
        report = training.train(train_config, model_store())
    except SealedModelError as exc:
        raise CommandError(str(exc)) from None
    emit(args, report, training.render_train(report))
    return 0


def cmd_security_evaluate(args: argparse.Namespace) -> int:
    from carevault.modelstore.store import SealedModelError
    from carevault.security import training

    try:
        result = training.evaluate(
            model_store(),
            seed=args.seed,
            days=args.days,
            users=args.users,
            version=args.version,
            day=args.day,
        )
    except SealedModelError as exc:
        raise CommandError(str(exc)) from None
    emit(args, result, training.render_evaluation(result))
    return 0


def cmd_security_record_day(args: argparse.Namespace) -> int:
    """Play a clinic day in Chromium against a real server and write its events (JSONL)."""
    from carevault.web.securitycore import clinic_day_recorder

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = clinic_day_recorder.record(out, short=args.short, keep=args.keep)
    text = (
        f"recorded {summary['events']} events of {summary['accounts']} accounts "
        f"({summary['unknown_names']} names that are no account) from "
        f"{summary['addresses']} addresses over {summary['hours']:.1f} hours of the day in "
        f"{summary['seconds']:.0f} s: {out}"
    )
    emit(args, summary, text)
    return 0


def cmd_security_train_policy(args: argparse.Namespace) -> int:
    from carevault.modelstore.store import SealedModelError
    from carevault.security import policy_training
    from carevault.security.policy_training import train as train_policy

    try:
        report = train_policy(model_store(), seed=args.seed)
    except SealedModelError as exc:
        raise CommandError(str(exc)) from None
    emit(args, report, policy_training.render_train(report))
    return 0


# -- the group -------------------------------------------------------------------------------


def register(commands: Commands) -> None:
    security = commands.add_parser(
        "security",
        help="the AI threat detection: train, evaluate; the encryption policy; the officer's "
        "way back in (status, incidents, unblock, lift, lift-floor)",
    )
    actions = security.add_subparsers(dest="security_command", required=True, metavar="ACTION")
    train = add_command(
        actions,
        "train",
        cmd_security_train,
        "train the risk ensemble on generated traffic and seal it into the data directory",
    )
    train.add_argument("--seed", type=int, default=1, help="traffic generator seed (default 1)")
    train.add_argument("--days", type=positive_number, default=14.0, help="days of traffic")
    train.add_argument("--users", type=positive, default=120, help="simulated accounts")
    train.add_argument(
        "--fusion", choices=["stacking", "max", "fisher"], default="stacking", help="how to fuse"
    )
    evaluate = add_command(
        actions,
        "evaluate",
        cmd_security_evaluate,
        "score held-out generated traffic with the sealed ensemble: ROC-AUC, precision/recall, "
        "false positives and time-to-detect per attack class and detector",
    )
    evaluate.add_argument(
        "--seed", type=int, default=2, help="generator seed, not the training one (default 2)"
    )
    evaluate.add_argument(
        "--days", type=positive_number, default=None, help="days (default: as trained)"
    )
    evaluate.add_argument("--users", type=positive, default=None, help="default: as trained")
    evaluate.add_argument("--version", type=positive, default=None, help="model version")
    evaluate.add_argument(
        "--day",
        default=None,
        help="a recorded clinic day (JSONL) to replay; default: the one shipped with CareVault",
    )
    record_day = add_command(
        actions,
        "record-day",
        cmd_security_record_day,
        "play a clinic day in Chromium against a fresh server and record its security events",
    )
    record_day.add_argument("--out", required=True, help="the JSONL event log to write")
    record_day.add_argument(
        "--short", action="store_true", help="a short day (a smoke test, under a minute)"
    )
    record_day.add_argument(
        "--keep", type=Path, default=None, help="the data directory to build the clinic in"
    )
    train_policy = add_command(
        actions,
        "train-policy",
        cmd_security_train_policy,
        "measure the suites' costs on this machine, label, fit the adaptive encryption policy "
        "and seal it into the data directory",
    )
    train_policy.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    add_command(
        actions,
        "status",
        cmd_security_status,
        "blocked addresses, suspended accounts, the encryption floor, active incidents, limits",
    )
    incidents = add_command(
        actions,
        "incidents",
        cmd_security_incidents,
        "active incidents with the responses in force and who may lift them",
    )
    incidents.add_argument("--limit", type=positive, default=20, help="at most (default 20)")
    activity = add_command(
        actions,
        "activity",
        cmd_security_activity,
        "every scored event and every incident (any status) with its responses since a time",
    )
    activity.add_argument(
        "--since", required=True, help="ISO 8601 time (UTC if no offset is given)"
    )
    unblock = add_command(
        actions,
        "unblock",
        cmd_security_unblock,
        "end an address block now; its evidence is marked handled so it does not fire again",
    )
    unblock.add_argument("address", help="the blocked IP address")
    lift = add_command(
        actions,
        "lift",
        cmd_security_lift,
        "lift an account's suspension and back-off now; its evidence is marked handled",
    )
    lift.add_argument("username", help="the account's username")
    add_command(
        actions,
        "lift-floor",
        cmd_security_lift_floor,
        "lower a raised encryption floor now; its evidence is marked handled",
    )
