"""Every scenario declares what it attacks, its bounds and what "held" means; names are unique
and selectable by name, prefix or category."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import carevault.attacklab
from carevault.attacklab import registry
from carevault.attacklab.bounds import Bounds
from carevault.attacklab.scenario import CATEGORIES, Outcome, Scenario

SCENARIOS = registry.all_scenarios()


def test_there_are_scenarios_and_their_names_are_unique():
    names = [s.name for s in SCENARIOS]
    assert names
    assert len(names) == len(set(names))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_each_scenario_declares_what_it_attacks_and_what_held_means(scenario):
    assert scenario.category in CATEGORIES
    assert len(scenario.attacks) > 15
    assert len(scenario.held_means) > 15
    quick = scenario.bounds_for(quick=True)
    assert quick.requests <= scenario.bounds.requests
    assert quick.seconds <= scenario.bounds.seconds <= 900
    assert callable(scenario.run)


def test_scenarios_are_chosen_by_name_prefix_or_category():
    first = SCENARIOS[0]
    assert registry.select([first.name]) == [first]
    assert first in registry.select([first.category])
    assert first in registry.select([first.name.split(".")[0]])
    with pytest.raises(KeyError, match="no scenario"):
        registry.select(["no.such-scenario"])


def test_a_scenario_with_an_unknown_category_or_defence_is_refused():
    with pytest.raises(ValueError, match="category"):
        Scenario("x.y", "physics", "a" * 20, "b" * 20, Bounds(1, 1), run=lambda ctx: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="unknown defence"):
        Outcome(held=True, defences=["magic"])


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_lab_never_imports_the_servers_internals():
    """It attacks over HTTP and through the files an attacker would hold (DESIGN.md)."""
    root = Path(carevault.attacklab.__file__).parent
    offenders = {
        f"{path.relative_to(root)}: {name}"
        for path in root.rglob("*.py")
        for name in _imports(path)
        if name.startswith(("carevault.web", "django"))
    }
    assert not offenders
