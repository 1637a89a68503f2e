"""``carevault bench`` (or ``bench all``): every benchmark, each in a process of its own
(``carevault bench NAME --json``: each sets up its own scratch data directory and Django, which
one process could not do twice), summed up in one Markdown table of goals, measured values and
MET / MISSED, for docs/performance.md.

Each benchmark states its goals as ``{"goal text": met}`` (``None``: not measured this run);
the value beside a goal is looked up by the goal's left-hand name (``field_vs_aesgcm <= 1.5``
finds ``field_vs_aesgcm`` in the result) or taken from ``goal_values`` when the benchmark gives
them. A benchmark that states no goal (``audit``) gets its ratios listed as "no goal".
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# In the order they run; killsafety is the kill-and-resume check of the key jobs.
BENCHMARKS = ("crypto", "web", "security", "policy", "models", "audit", "killsafety", "load")
_LEFT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(?:<=|>=|<|>|==)")


def _run_one(name: str, quick: bool) -> dict[str, Any]:
    """``carevault bench NAME --json`` in a child process: its JSON, or why it failed."""
    command = [sys.executable, "-m", "carevault.cli", "bench", name, "--json"]
    if quick:
        command.append("--quick")
    if name == "load":
        command.append("--report-only")  # its goals are read here, from its JSON
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our own interpreter and command line
        command, capture_output=True, text=True, check=False
    )
    seconds = round(time.monotonic() - started, 1)
    try:
        result = json.loads(done.stdout)
    except ValueError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {done.returncode}: {tail[0]}", "seconds": seconds}
    if not isinstance(result, dict):
        return {"error": "its --json output is not an object", "seconds": seconds}
    result["seconds"] = seconds
    result["exit_code"] = done.returncode
    return result


def run_all(
    *,
    quick: bool = False,
    names: tuple[str, ...] = BENCHMARKS,
    runner: Callable[[str, bool], dict[str, Any]] = _run_one,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``names`` (each with ``--quick`` when ``quick``) and collect their goals."""
    results: dict[str, Any] = {}
    for name in names:
        if progress is not None:
            progress(f"bench {name}{' --quick' if quick else ''}")
        results[name] = runner(name, quick)
    return {"quick": quick, "results": results, "rows": rows(results)}


def _walk(data: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*path, str(key)), value
            yield from _walk(value, (*path, str(key)))


def _value_of(result: dict[str, Any], goal: str, where: tuple[str, ...]) -> Any:
    given = result.get("goal_values")
    if isinstance(given, dict) and goal in given:
        return given[goal]
    match = _LEFT.match(goal)
    if match is None:
        return None
    name = match.group(1)
    # The value nearest the goal: first within the dict that holds the goals, then anywhere.
    scope = result
    for key in where[:-1]:
        scope = scope.get(key, {}) if isinstance(scope, dict) else {}
    for tree in (scope, result):
        for path, value in _walk(tree):
            if path[-1] == name and isinstance(value, int | float) and not isinstance(value, bool):
                return value
    return None


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per goal of every benchmark: benchmark, goal, measured, met (True / False /
    None: not measured or no goal)."""
    out: list[dict[str, Any]] = []
    for name, result in results.items():
        if "error" in result:
            out.append(
                {"benchmark": name, "goal": "ran", "measured": result["error"], "met": False}
            )
            continue
        found = False
        for path, goals in _walk(result):
            if path[-1] != "goals" or not isinstance(goals, dict):
                continue
            label = name if len(path) == 1 else f"{name} / {' / '.join(path[:-1])}"
            for goal, met in goals.items():
                found = True
                out.append(
                    {
                        "benchmark": label,
                        "goal": goal,
                        "measured": _value_of(result, goal, path),
                        "met": met if isinstance(met, bool) else None,
                    }
                )
        if name == "killsafety":
            found = True
            lost = [result.get(k) for k in ("lost", "tampered", "resume_failures")]
            out.append(
                {
                    "benchmark": name,
                    "goal": "0 lost, 0 tampered, 0 failed resumes",
                    "measured": "/".join(str(x) for x in lost),
                    "met": all(x == 0 for x in lost),
                }
            )
        if name == "audit":
            for row in result.get("rows", []):
                found = True
                out.append(
                    {
                        "benchmark": f"{name} / {row.get('backend')}",
                        "goal": "sealed / chained appends per second (no goal stated)",
                        "measured": row.get("ratio"),
                        "met": None,
                    }
                )
        if not found:
            out.append(
                {"benchmark": name, "goal": "(states no goal)", "measured": None, "met": None}
            )
    return out


def missed(outcome: dict[str, Any]) -> list[str]:
    return [f"{r['benchmark']}: {r['goal']}" for r in outcome["rows"] if r["met"] is False]


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    else:
        text = str(value)
    return text.replace("|", "\\|")


def _verdict(met: bool | None) -> str:
    return "—" if met is None else ("MET" if met else "**MISSED**")


def markdown(outcome: dict[str, Any]) -> str:
    """The goals as one Markdown table (for docs/performance.md)."""
    quick = " --quick" if outcome.get("quick") else ""
    lines = [
        f"Produced by `carevault bench{quick}` ({'quick: smoke sizes' if quick else 'full'}).",
        "",
        "| benchmark | goal | measured | verdict |",
        "|---|---|---|---|",
    ]
    for row in outcome["rows"]:
        lines.append(
            f"| {_cell(row['benchmark'])} | {_cell(row['goal'])} | {_cell(row['measured'])} "
            f"| {_verdict(row['met'])} |"
        )
    met = sum(1 for r in outcome["rows"] if r["met"] is True)
    out = sum(1 for r in outcome["rows"] if r["met"] is False)
    lines += ["", f"{met} goals met, {out} missed."]
    for name, result in outcome["results"].items():
        for note in result.get("notes", []) if isinstance(result, dict) else []:
            lines.append(f"\n{name}: {note}")
    return "\n".join(lines) + "\n"


def write(table: str, output: Path | None) -> Path:
    """Write the table (default: ``bench.md`` in the data directory); the path written."""
    from carevault.config import data_dir

    path = output or data_dir() / "bench.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table)
    return path
