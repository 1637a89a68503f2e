"""Every scenario in :mod:`carevault.attacklab.scenarios`: each module defines ``SCENARIO`` or
``SCENARIOS``; adding a scenario is adding a file."""

from __future__ import annotations

import importlib
import pkgutil

from . import scenarios as package
from .scenario import CATEGORIES, Scenario


def all_scenarios() -> list[Scenario]:
    found: list[Scenario] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        declared = getattr(module, "SCENARIOS", None) or [getattr(module, "SCENARIO", None)]
        found.extend(s for s in declared if isinstance(s, Scenario))
    names = [s.name for s in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuntimeError(f"scenario names declared twice: {duplicates}")
    # In the order of the sections (authentication first, the benign day last).
    return sorted(found, key=lambda s: (CATEGORIES.index(s.category), s.name))


def select(names: list[str], *, quick: bool = False) -> list[Scenario]:
    """The scenarios named (``all``, a category, or scenario names / name prefixes)."""
    every = all_scenarios()
    if not names or names == ["all"]:
        return [s for s in every if s.in_quick or not quick]
    chosen: list[Scenario] = []
    for name in names:
        matched = [
            s
            for s in every
            if s.name == name or s.category == name or s.name.startswith(name.rstrip(".") + ".")
        ]
        if not matched:
            known = ", ".join(s.name for s in every)
            raise KeyError(f"no scenario {name!r}; known: {known}")
        chosen.extend(s for s in matched if s not in chosen)
    return chosen
