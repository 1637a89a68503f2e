"""``carevault bench [all] | crypto | web | security | policy | models | killsafety | audit |
load``: the benchmarks (docs/performance.md); with no name (or ``all``) every one of them, each
in a process of its own, summed up in one Markdown table of goals. The benchmarks sit beside
the command line and never import it: what killsafety needs from here (it drives ``carevault
keys ...`` and walks the key stores) is handed to it, as is the attack lab's disposable server
to ``bench load``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from carevault.cli._common import CommandError, Commands, add_command, emit, positive
from carevault.cli._django import django_setup
from carevault.cli.keys import key_stores

Main = Callable[[Sequence[str]], int]


def cmd_bench(args: argparse.Namespace, *, main: Main) -> int:
    if args.target == "crypto":
        from carevault.bench import crypto as bench_crypto

        result = bench_crypto.run(quick=args.quick)
        emit(args, result, bench_crypto.render(result))
        return 0
    if args.target == "web":
        # Its own data directory and database: a benchmark never writes into the user's.
        with tempfile.TemporaryDirectory(prefix="carevault-bench-") as scratch:
            os.environ["CAREVAULT_DATA_DIR"] = scratch
            os.environ.pop("DATABASE_URL", None)
            django_setup()
            from carevault.bench import web as bench_web

            result = bench_web.run(quick=args.quick)
        emit(args, result, bench_web.render(result))
        return 0
    if args.target == "security":
        from carevault.bench import security as bench_security

        parts = set(args.part or ()) or {"ensemble", "record-page"}
        result = bench_security.run(quick=args.quick) if "ensemble" in parts else {}
        if "record-page" in parts:
            # The record page by scoring mode: its own data directory and database.
            with tempfile.TemporaryDirectory(prefix="carevault-bench-") as scratch:
                os.environ["CAREVAULT_DATA_DIR"] = scratch
                os.environ.pop("DATABASE_URL", None)
                django_setup()
                from carevault.bench import scoring_path

                result["record_page"] = scoring_path.run(quick=args.quick)
        emit(args, result, bench_security.render(result))
        return 0
    if args.target == "policy":
        from carevault.bench import policy as bench_policy

        result = bench_policy.run(quick=args.quick)
        emit(args, result, bench_policy.render(result))
        return 0
    if args.target == "models":
        from carevault.bench import models as bench_models

        try:
            result = bench_models.run(quick=args.quick, parts=args.part or None)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        emit(args, result, bench_models.render(result))
        return 0
    if args.target == "audit":
        from carevault.bench import audit as bench_audit

        # Scratch data directories and databases of its own: never the user's.
        postgres = args.postgres or None
        if postgres is None and os.environ.get("DATABASE_URL", "").startswith("postgres"):
            postgres = os.environ["DATABASE_URL"]
        result = bench_audit.run(quick=args.quick, postgres=postgres)
        emit(args, result, bench_audit.render(result))
        return 0
    if args.target == "load":
        from carevault.attacklab.lab import LabError, LabServer
        from carevault.bench import load as bench_load

        # Disposable servers in scratch data directories (and a scratch PostgreSQL database).
        # A SIGTERM unwinds like Ctrl-C, so the servers, Locust and the scratch database go too.
        previous = signal.signal(signal.SIGTERM, _exit_on_term)
        try:
            result = bench_load.run(
                LabServer,
                quick=args.quick,
                postgres=args.postgres or bench_load.DEFAULT_POSTGRES,
                redis_url=args.redis or bench_load.DEFAULT_REDIS,
                progress=_progress,  # on stderr: --json output stays clean
            )
        except (bench_load.LoadError, LabError) as exc:
            raise CommandError(str(exc)) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
        emit(args, result, bench_load.render(result))
        return _verdict(bench_load.missed(result), args.report_only)
    if args.target == "all":
        from carevault.bench import summary

        outcome = summary.run_all(quick=args.quick, progress=_progress)
        table = summary.markdown(outcome)
        written = summary.write(table, args.output)
        emit(args, {**outcome, "markdown": written.as_posix()}, f"{table}\nwritten to {written}")
        return _verdict(summary.missed(outcome), args.report_only)
    if args.target == "killsafety":
        from carevault.bench import killsafety

        # Its own scratch data directory (forked jobs, SIGKILLed on purpose): never the user's.
        result = killsafety.run(
            killsafety.CommandLine(main=main, key_stores=key_stores),
            points=args.points,
            seed=args.seed,
            quick=args.quick,
        )
        emit(args, result, killsafety.render(result))
        return 0 if result["lost"] == result["tampered"] == result["resume_failures"] == 0 else 1
    raise CommandError(f"unknown benchmark {args.target!r}")


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _progress(line: str) -> None:
    print(f"... {line}", file=sys.stderr, flush=True)


def _verdict(missed: list[str], report_only: bool) -> int:
    """Non-zero when a goal was missed, unless only a report was asked for."""
    if missed and not report_only:
        print(f"goals missed: {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0


def register(commands: Commands, *, main: Main) -> None:
    """The ``bench`` command. ``main`` is the whole command line, which killsafety runs: given by
    the package that registers this group (a group module never imports the package)."""

    def handler(args: argparse.Namespace) -> int:
        return cmd_bench(args, main=main)

    bench = add_command(
        commands, "bench", handler, "run a benchmark and print ratios against baselines"
    )
    bench.add_argument(
        "target",
        nargs="?",
        default="all",
        choices=[
            "all",
            "crypto",
            "web",
            "security",
            "policy",
            "models",
            "killsafety",
            "audit",
            "load",
        ],
        help="the benchmark (default: all of them, summed up in one Markdown table)",
    )
    bench.add_argument(
        "--postgres",
        metavar="URL",
        help="bench audit: also on this PostgreSQL server (scratch databases, dropped after; "
        "default: DATABASE_URL when it is PostgreSQL); bench load: the PostgreSQL server of "
        "the PostgreSQL + Redis runs (a scratch database; default "
        "postgres://postgres@127.0.0.1:5432/postgres)",
    )
    bench.add_argument(
        "--redis",
        metavar="URL",
        help="bench load: the Redis of the PostgreSQL + Redis runs (keys under a prefix of "
        "the run's own; default redis://127.0.0.1:6379/14)",
    )
    bench.add_argument(
        "--report-only",
        action="store_true",
        help="bench load / all: exit 0 even when a goal is missed (the report says which)",
    )
    bench.add_argument(
        "--output",
        type=Path,
        help="bench all: where the Markdown table goes (default: bench.md in the data "
        "directory, var/ unless CAREVAULT_DATA_DIR says otherwise)",
    )
    bench.add_argument(
        "--points", type=positive, default=200, help="killsafety: kill points to try"
    )
    bench.add_argument("--seed", type=int, default=13, help="killsafety: random seed")
    bench.add_argument("--quick", action="store_true", help="small sizes (smoke test only)")
    bench.add_argument(
        "--part",
        action="append",
        choices=["homomorphic", "multiparty", "extraction", "training", "ensemble", "record-page"],
        help="bench models / security: run only this part (repeatable)",
    )
