"""What a scenario is and what it reports.

A scenario declares what it attacks, its bounds (requests and seconds: it stops by itself) and
what "held" means, in words a security officer reads in the report. Its ``run`` returns an
:class:`Outcome`: held or not, which defences fired, what leaked or was lost (0 is the goal),
and the findings that back the verdict. Whether the AI layer raised an incident is not the
scenario's to say: the runner reads it from the server's own record (see observe.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .bounds import Bounds
from .context import Context

CATEGORIES = (
    "authentication",
    "access",
    "data at rest",
    "uploads",
    "models",
    "faults",
    "load",
    "benign",
)

# The defences a scenario may name as having fired (the report groups by them).
DEFENCES = (
    "throttle",
    "suspension",
    "packet check",
    "session check",
    "access policy",
    "CSRF check",
    "input validation",
    "upload check",
    "AEAD check",
    "signature",
    "audit verify",
    "encryption at rest",
    "extraction monitor",
    "budget",
    "output obfuscation",
    "model seal",
    "poisoning defence",
    "kill safety",
    "rate limit",
)


@dataclass
class Outcome:
    held: bool
    defences: list[str] = field(default_factory=list)
    leaked: int = 0  # PHI items, secrets or model parameters that got out
    lost: int = 0  # records lost or silently changed
    findings: list[str] = field(default_factory=list)
    # Figures for charts and JSON (for example extraction agreement per channel).
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [d for d in self.defences if d not in DEFENCES]
        if unknown:
            raise ValueError(f"unknown defence names: {unknown} (see scenario.DEFENCES)")


@dataclass(frozen=True)
class Scenario:
    name: str  # "auth.brute-force": category prefix, dot, what
    category: str
    attacks: str  # what it attacks, one sentence
    held_means: str  # what "held" means, one sentence
    bounds: Bounds
    run: Callable[[Context], Outcome] = field(repr=False, compare=False)
    quick_bounds: Bounds | None = None  # smaller bounds for `attack lab --quick`
    # Needs the data directory an attacker would have stolen (at-rest and fault scenarios).
    needs_files: bool = False
    # Needs to kill and restart the server (fault scenarios; the lab only).
    needs_server_control: bool = False
    # The AI layer should raise an incident for it (reported as detected / missed).
    expect_detection: bool = False
    # Runs in the quick lab (make test); the full lab runs everything.
    in_quick: bool = True

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"{self.name}: unknown category {self.category!r}")
        if not self.name or " " in self.name:
            raise ValueError(f"bad scenario name {self.name!r}")

    def bounds_for(self, quick: bool) -> Bounds:
        return self.quick_bounds if quick and self.quick_bounds is not None else self.bounds
