"""The ground floor stays the ground floor: every layer may import it, so it imports none."""

import ast
import sys
from pathlib import Path

import carevault.platform


def _imported_modules(source: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." if node.level else node.module or "")
    return names


def test_the_platform_package_imports_the_standard_library_only():
    package = Path(carevault.platform.__file__).parent
    for source in package.glob("*.py"):
        for name in _imported_modules(source):
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names, f"{source.name} imports {name}"
