"""Run scenarios one after another, each within its bounds, and collect what held, what the AI
layer detected and what leaked or was lost."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from .bounds import BoundReached, Skip
from .context import Context
from .lab import Files, LabServer
from .observe import Detection, Observer, attribute
from .scenario import Outcome, Scenario

STATUSES = ("held", "failed", "error", "skipped")


@dataclass
class Result:
    scenario: Scenario
    status: str  # one of STATUSES
    seconds: float
    requests: int
    outcome: Outcome | None = None
    detection: Detection = field(default_factory=lambda: Detection(observed=False))
    reason: str = ""  # why it was skipped or errored
    started: float = 0.0
    restored: list[str] = field(default_factory=list)

    @property
    def detection_verdict(self) -> str:
        if not self.detection.observed or self.status in ("skipped", "error"):
            return "not observed"
        if self.detection.detected:
            return "detected"
        return "missed" if self.scenario.expect_detection else "none"

    def to_json(self) -> dict[str, Any]:
        s = self.scenario
        return {
            "name": s.name,
            "category": s.category,
            "attacks": s.attacks,
            "held_means": s.held_means,
            "bounds": {"requests": s.bounds.requests, "seconds": s.bounds.seconds},
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "started": self.started,
            "outcome": asdict(self.outcome) if self.outcome is not None else None,
            "detection": {
                **asdict(self.detection),
                "verdict": self.detection_verdict,
                "expected": s.expect_detection,
            },
            "restored": self.restored,
        }


def run_one(
    scenario: Scenario,
    *,
    index: int,
    base_url: str,
    quick: bool,
    seed: int,
    passwords: Mapping[str, str],
    files: Files | None,
    server: LabServer | None,
    observer: Observer | None,
) -> Result:
    bounds = scenario.bounds_for(quick)
    ctx = Context(
        base_url=base_url,
        bounds=bounds,
        index=index,
        quick=quick,
        seed=seed,
        passwords=passwords,
        files=files,
        server=server,
        observer=observer,
    )
    started = time.time()
    result = Result(scenario, "error", 0.0, 0, started=started)
    if scenario.needs_files and files is None:
        result.status, result.reason = (
            "skipped",
            "needs the data directory (the lab, or --data-dir)",
        )
        return result
    if scenario.needs_server_control and server is None:
        result.status, result.reason = "skipped", "needs to kill and restart the server (lab only)"
        return result
    try:
        outcome = scenario.run(ctx)
        result.outcome = outcome
        result.status = "held" if outcome.held else "failed"
    except Skip as exc:
        result.status, result.reason = "skipped", str(exc)
    except BoundReached as exc:
        result.reason = f"ran past its bounds without a verdict ({exc})"
    except Exception as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1]
        result.reason = (
            f"{type(exc).__name__}: {exc} ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
        )
    result.seconds = time.monotonic() - ctx.started
    result.requests = ctx.requests
    if server is not None and not server.running():
        # A scenario that killed the server and did not bring it back must not sink the rest.
        server.start()
    if observer is not None and result.status != "skipped":
        try:
            result.detection = attribute(
                observer.activity(started),
                started=started,
                ended=time.time(),
                attack_times=ctx.attack_times,
                addresses=ctx.addresses,
                accounts=ctx.accounts,
                honest_addresses=ctx.honest_addresses,
                honest_accounts=ctx.honest_accounts,
            )
            result.restored = observer.restore()
        except Exception as exc:
            result.reason = (result.reason + "; " if result.reason else "") + (
                f"could not read the server's record: {exc}"
            )
    if result.detection.honest_harmed and result.status == "held":
        # A defence that hurts honest users did not hold, whatever else it stopped.
        result.status = "failed"
        if result.outcome is not None:
            result.outcome.findings.append(
                f"{len(result.detection.honest_harmed)} responses touched honest users"
            )
    return result


def run_all(
    scenarios: list[Scenario],
    *,
    base_url: str,
    quick: bool = False,
    seed: int = 0,
    passwords: Mapping[str, str] | None = None,
    files: Files | None = None,
    server: LabServer | None = None,
    progress: TextIO | None = sys.stderr,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    observer = Observer(files) if files is not None else None
    if observer is not None:
        observer.restore()
    results = []
    width = max((len(s.name) for s in scenarios), default=10)
    for number, scenario in enumerate(scenarios, start=1):
        if progress is not None:
            progress.write(f"[{number:>2}/{len(scenarios)}] {scenario.name:<{width}} ... ")
            progress.flush()
        result = run_one(
            scenario,
            index=number,
            base_url=base_url,
            quick=quick,
            seed=seed,
            passwords=passwords or {},
            files=files,
            server=server,
            observer=observer,
        )
        results.append(result)
        if progress is not None:
            progress.write(progress_line(result) + "\n")
            progress.flush()
        if on_result is not None:
            on_result(result)
    return results


def progress_line(result: Result) -> str:
    text = f"{result.status} ({result.seconds:.1f} s, {result.requests} requests)"
    if result.detection_verdict == "detected":
        after = result.detection.first_incident_after
        text += f", incident after {after} requests ({result.detection.level})"
    elif result.detection_verdict == "missed":
        text += ", no incident"
    if result.reason:
        text += f": {result.reason}"
    return text


def exit_status(results: list[Result]) -> int:
    """Non-zero when any defence failed or any scenario could not give a verdict."""
    return 1 if any(r.status in ("failed", "error") for r in results) else 0
