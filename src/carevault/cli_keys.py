"""``carevault keys sweep``: remove what an interrupted key job left behind (issue 13)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def cmd_keys_sweep(args: argparse.Namespace) -> int:
    from carevault.cli import _django, _emit, _require_database

    _django()
    _require_database()
    from carevault.web.vault import sweep

    grace = sweep.DEFAULT_GRACE_SECONDS if args.older_than is None else args.older_than
    report = sweep.sweep(older_than=grace, dry_run=args.dry_run)
    data = {
        "orphan_files": report.orphan_files,
        "partial_writes": report.partial_writes,
        "referenced_files": report.referenced,
        "removed": 0 if args.dry_run else report.removed,
        "dry_run": args.dry_run,
    }
    verb = "would remove" if args.dry_run else "removed"
    text = (
        f"{verb} {len(report.orphan_files)} unreferenced stored file(s) and "
        f"{len(report.partial_writes)} interrupted write(s); "
        f"{report.referenced} stored file(s) are referenced and kept"
    )
    _emit(args, data, text)
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def add_sweep(
    keys_sub: Any,
    add: Callable[[Any, str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser],
) -> None:
    sweep = add(
        keys_sub,
        "sweep",
        cmd_keys_sweep,
        "remove files no committed record names (left by an interrupted key job)",
    )
    sweep.add_argument(
        "--older-than",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="only files at least this old (default 900: younger ones may be uploads whose "
        "transaction has not committed yet)",
    )
    sweep.add_argument("--dry-run", action="store_true", help="list, remove nothing")
