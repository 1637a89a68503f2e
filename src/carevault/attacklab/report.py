"""The lab's report: a table on the terminal, JSON for CI, and a self-contained HTML page
(html_report.py)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from .runner import Result


def summary(results: list[Result]) -> dict[str, Any]:
    counted = [r for r in results if r.status in ("held", "failed")]
    observed = [r for r in counted if r.detection.observed]
    expected = [r for r in observed if r.scenario.expect_detection]
    delays = [
        r.detection.first_incident_after
        for r in expected
        if r.detection.detected and r.detection.first_incident_after is not None
    ]
    return {
        "scenarios": len(results),
        "held": sum(r.status == "held" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "errors": sum(r.status == "error" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
        "leaked": sum(r.outcome.leaked for r in results if r.outcome is not None),
        "lost": sum(r.outcome.lost for r in results if r.outcome is not None),
        "detection_expected": len(expected),
        "detected": sum(r.detection.detected for r in expected),
        "median_requests_to_incident": (sorted(delays)[len(delays) // 2] if delays else None),
        "honest_users_harmed": sum(len(r.detection.honest_harmed) for r in results),
        "attack_requests": sum(r.requests for r in results),
    }


def to_json(
    results: list[Result], *, target: str, quick: bool, extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "carevault_attack_lab": 1,
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "target": target,
        "quick": quick,
        "summary": summary(results),
        "results": [r.to_json() for r in results],
        **extra,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _defences(result: Result) -> str:
    if result.outcome is None:
        return ""
    return ", ".join(result.outcome.defences)


def _detection(result: Result) -> str:
    verdict = result.detection_verdict
    if verdict == "detected":
        return f"after {result.detection.first_incident_after} req ({result.detection.level})"
    return verdict


def table(results: list[Result]) -> str:
    rows = [("scenario", "result", "defences that fired", "AI layer", "leaked", "lost", "req")]
    for r in results:
        rows.append(
            (
                r.scenario.name,
                r.status,
                _defences(r) or r.reason[:60],
                _detection(r),
                str(r.outcome.leaked) if r.outcome else "-",
                str(r.outcome.lost) if r.outcome else "-",
                str(r.requests),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    s = summary(results)
    lines.append("")
    lines.append(
        f"{s['held']} held, {s['failed']} failed, {s['errors']} errors, {s['skipped']} skipped; "
        f"leaked {s['leaked']}, lost {s['lost']}; AI layer raised an incident for "
        f"{s['detected']} of {s['detection_expected']} attacks it should see"
        + (
            f" (median {s['median_requests_to_incident']} attack requests)"
            if s["median_requests_to_incident"] is not None
            else ""
        )
        + f"; honest users harmed: {s['honest_users_harmed']}"
    )
    for r in results:
        if r.status in ("failed", "error"):
            why = r.reason or "; ".join((r.outcome.findings if r.outcome else [])[-3:])
            lines.append(f"  {r.scenario.name}: {r.status}: {why}")
    return "\n".join(lines)
