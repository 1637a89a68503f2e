"""The store sits below its two users, which are peers: imports (lazy ones too) point down."""

import ast
from pathlib import Path

import pytest

import carevault

ROOT = Path(carevault.__file__).parent


def _imports_of(package: str) -> set[tuple[str, str]]:
    """(module file, imported module) for every import anywhere in ``package``'s sources."""
    found: set[tuple[str, str]] = set()
    for source in (ROOT / package).rglob("*.py"):
        parts = ["carevault", *source.relative_to(ROOT).with_suffix("").parts]
        here = parts[:-1]  # the package a relative import starts from
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                found.update((source.name, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                name = ".".join([*base, *([node.module] if node.module else [])])
                found.add((source.name, name))
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("modelstore", ("carevault.security", "carevault.modelguard")),
        ("security", ("carevault.modelguard",)),
        ("modelguard", ("carevault.security",)),
    ],
)
def test_a_package_imports_nothing_beside_or_above_it(package, forbidden):
    offending = sorted(
        (source, name)
        for source, name in _imports_of(package)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )
    assert offending == []
