"""``carevault selfcheck``: the crypto self-check (make run starts with it)."""

from __future__ import annotations

import argparse

from carevault import selfcheck
from carevault.cli._common import EXIT_FAILURE, Commands, add_command, emit


def cmd_selfcheck(args: argparse.Namespace) -> int:
    results = selfcheck.run()
    ok = all(r.ok for r in results)
    lines = [f"{'ok  ' if r.ok else 'FAIL'}  {r.name}: {r.detail}" for r in results]
    lines.append("crypto self-check passed" if ok else "crypto self-check FAILED")
    data = {"ok": ok, "checks": [r.__dict__ for r in results]}
    emit(args, data, "\n".join(lines))
    return 0 if ok else EXIT_FAILURE


def register(commands: Commands) -> None:
    add_command(commands, "selfcheck", cmd_selfcheck, "run the crypto self-check")
