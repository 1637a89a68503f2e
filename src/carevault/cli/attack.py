"""``carevault attack list | run | lab``: the attack lab's command line (issue 14)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from carevault.cli._common import Commands


def _registry() -> Any:
    from carevault.attacklab import registry

    return registry


def cmd_list(args: argparse.Namespace) -> int:
    scenarios = _registry().all_scenarios()
    if args.json:
        data = [
            {
                "name": s.name,
                "category": s.category,
                "attacks": s.attacks,
                "held_means": s.held_means,
                "bounds": {"requests": s.bounds.requests, "seconds": s.bounds.seconds},
                "quick": s.in_quick,
                "needs_files": s.needs_files,
                "needs_server_control": s.needs_server_control,
                "expect_detection": s.expect_detection,
            }
            for s in scenarios
        ]
        print(json.dumps(data, indent=2))
        return 0
    width = max(len(s.name) for s in scenarios)
    for s in scenarios:
        print(f"{s.name:<{width}}  {s.attacks}")
        print(f"{'':<{width}}  held means: {s.held_means}")
        print(f"{'':<{width}}  bounds: {s.bounds.requests} requests, {s.bounds.seconds:.0f} s")
    print(f"\n{len(scenarios)} scenarios")
    return 0


def _select(args: argparse.Namespace) -> list[Any]:
    try:
        return list(_registry().select(list(args.scenarios), quick=args.quick))
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None


def _report(
    args: argparse.Namespace, results: list[Any], *, target: str, extra: dict[str, Any]
) -> int:
    from carevault.attacklab import report, runner

    print(report.table(results))
    data = report.to_json(results, target=target, quick=args.quick, extra=extra)
    if args.json_file:
        report.write_json(Path(args.json_file), data)
        print(f"JSON report: {args.json_file}")
    if args.html_file:
        from carevault.attacklab import html_report

        html_report.write(Path(args.html_file), data)
        print(f"HTML report: {args.html_file}")
    return runner.exit_status(results)


def _timeline(files: Any, started: float) -> dict[str, Any]:
    """The run's risk timeline, read from the server's record (nothing when it cannot be read)."""
    from carevault.attacklab import observe

    if files is None:
        return {"timeline": {"events": []}}
    try:
        return {"timeline": observe.timeline(observe.Observer(files).activity(started))}
    except Exception as exc:
        print(f"could not read the risk timeline: {exc}", file=sys.stderr)
        return {"timeline": {"events": []}}


def cmd_run(args: argparse.Namespace) -> int:
    from carevault.attacklab import runner, target
    from carevault.attacklab.lab import DEMO_USERS, Files, LabServer

    try:
        base_url = target.check_target(args.target, args.i_own_this_host)
    except target.TargetRefused as exc:
        raise ValueError(str(exc)) from None
    scenarios = _select(args)
    password = os.environ.get(args.password_env, "")
    passwords = {user: password for user in DEMO_USERS} if password else {}
    files = None
    if args.data_dir:
        data_dir = Path(args.data_dir)
        if not data_dir.is_dir():
            raise ValueError(f"--data-dir: no such directory: {data_dir}")
        files = Files(data_dir, LabServer(data_dir).files.env)
    results = runner.run_all(
        scenarios,
        base_url=base_url,
        quick=args.quick,
        seed=args.seed,
        passwords=passwords,
        files=files,
    )
    return _report(args, results, target=base_url, extra={})


def cmd_lab(args: argparse.Namespace) -> int:
    from carevault.attacklab import runner
    from carevault.attacklab.lab import LabError, LabServer

    scenarios = _select(args)
    keep = Path(args.keep) if args.keep else None
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise ValueError(f"--keep: {keep} is not empty")
    server = LabServer(keep)
    try:
        print(
            f"preparing the lab in {server.data_dir} (demo data, models)...",
            file=sys.stderr,
            flush=True,
        )
        server.prepare()
        server.start()
        print(f"lab server at {server.url} (2 workers)", file=sys.stderr, flush=True)
        started = time.time()
        results = runner.run_all(
            scenarios,
            base_url=server.url,
            quick=args.quick,
            seed=args.seed,
            passwords=server.passwords,
            files=server.files,
            server=server,
        )
        extra = _timeline(server.files, started)
    except LabError as exc:
        raise ValueError(f"lab: {exc}") from None
    finally:
        server.close(keep=keep is not None)
    return _report(args, results, target="lab", extra=extra)


def register(commands: Commands) -> None:
    """The ``attack`` command group. Its failures are ``ValueError``s: one line, exit 1."""
    attack = commands.add_parser(
        "attack", help="the attack lab: real attacks against a running CareVault, and a report"
    )
    actions = attack.add_subparsers(dest="attack_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the scenarios", description="the scenarios")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=cmd_list)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "scenarios",
            nargs="*",
            metavar="SCENARIO",
            help="names, prefixes or categories (default: all)",
        )
        p.add_argument("--quick", action="store_true", help="smaller bounds (make test)")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument("--json", dest="json_file", metavar="FILE", help="write the JSON report")
        p.add_argument("--html", dest="html_file", metavar="FILE", help="write the HTML report")

    run = actions.add_parser(
        "run",
        help="run scenarios against a running server",
        description="run scenarios against a running server (loopback only unless you own it)",
    )
    common(run)
    run.add_argument("--target", required=True, metavar="URL", help="the server's base URL")
    run.add_argument(
        "--i-own-this-host", metavar="HOST", help="allow this non-loopback host (yours only)"
    )
    run.add_argument(
        "--password-env",
        default="CAREVAULT_ATTACK_PASSWORD",
        metavar="VAR",
        help="environment variable holding the demo users' password (default "
        "CAREVAULT_ATTACK_PASSWORD); without it, scenarios that sign in are skipped",
    )
    run.add_argument(
        "--data-dir",
        metavar="DIR",
        help="the target's data directory: at-rest scenarios attack a copy of it, and the "
        "AI layer's answers are read from it",
    )
    run.set_defaults(handler=cmd_run)

    lab = actions.add_parser(
        "lab",
        help="start a disposable server with demo data, attack it, tear it down",
        description="start a disposable server with demo data on a free loopback port (two "
        "workers), run every scenario against it, tear it down",
    )
    common(lab)
    lab.add_argument(
        "--keep", metavar="DIR", help="build the lab in this empty directory and keep it"
    )
    lab.set_defaults(handler=cmd_lab)
