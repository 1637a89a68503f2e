"""The ``carevault`` command. Every subcommand has ``--help``; failures print one line to stderr
and exit non-zero; ``--json`` gives machine-readable output where a machine would read it.

One module per command group, each registering its subcommands (``register(commands)``); this
package only assembles them, in the order ``carevault --help`` lists them, and runs one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from carevault.cli import (
    attack,
    audit,
    backup,
    bench,
    demo,
    keys,
    manage,
    model,
    outbox,
    security,
    selfcheck,
    serve,
    worker,
)
from carevault.cli._common import EXIT_FAILURE, CommandError
from carevault.crypto import CryptoError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carevault", description="CareVault: secure clinical records."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    selfcheck.register(commands)
    keys.register(commands)
    demo.register(commands)
    serve.register(commands)
    worker.register(commands)
    audit.register(commands)
    outbox.register(commands)
    backup.register(commands)
    attack.register(commands)
    manage.register(commands)
    security.register(commands)
    model.register(commands)
    # The kill-safety benchmark runs whole commands (`keys rotate`, ...): it is given this main.
    bench.register(commands, main=main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from django.db import DatabaseError

    try:
        result: int = args.handler(args)
    except DatabaseError as exc:
        print(f"carevault: error: database: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_FAILURE
    except (CommandError, CryptoError, ValueError, OSError) as exc:
        # One line, no traceback: tracebacks can carry values, and values can be secrets.
        print(f"carevault: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return result
