"""What every command group shares: the one-line error, the exit status, ``--json`` output, the
argument types, and the way a subcommand is declared."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TypeAlias

from carevault import config

EXIT_FAILURE = 1

Handler = Callable[[argparse.Namespace], int]
# What ``add_subparsers()`` returns: where a group registers its subcommands.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandError(Exception):
    """A failure to report to the user in one line."""


def emit(
    args: argparse.Namespace,
    data: Any,
    text: str,
    *,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """``data`` as JSON with ``--json``, else ``text`` for people."""
    print(json.dumps(data, indent=2, sort_keys=True, default=default) if args.json else text)


def add_command(
    commands: Commands, name: str, handler: Handler, help: str
) -> argparse.ArgumentParser:
    """A subcommand with ``--json``, its help line doubling as its description."""
    p: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=handler)
    return p


def positive(text: str) -> int:
    """An argument type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def positive_number(text: str) -> float:
    """An argument type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def model_store() -> Any:
    """The sealed-model store of the data directory (risk ensemble, policy, diagnosis)."""
    from carevault.modelstore.datadir import model_store

    return model_store(config.data_dir())
