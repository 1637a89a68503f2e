"""``carevault bench crypto | web | security | policy | models | killsafety | audit``: the
benchmarks (docs/performance.md). The benchmarks sit beside the command line and never import
it: what killsafety needs from here (it drives ``carevault keys ...`` and walks the key stores)
is handed to it."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Sequence

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
        choices=["crypto", "web", "security", "policy", "models", "killsafety", "audit"],
    )
    bench.add_argument(
        "--postgres",
        metavar="URL",
        help="bench audit: also on this PostgreSQL server (scratch databases, dropped after; "
        "default: DATABASE_URL when it is PostgreSQL)",
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
