"""bench/locustfile.py: Locust reads it, and its users cover every page of the clinic mix.

The locustfile is never imported here: Locust patches the standard library with gevent on
import, which must not happen in this process (nor in any CareVault process). It is read as
source, and Locust itself is asked to list its users, in a child process."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from carevault.bench import load

SOURCE = load.LOCUSTFILE.read_text()
TREE = ast.parse(SOURCE)


def _constants() -> dict[str, str]:
    """Module-level NAME = "string" assignments."""
    found = {}
    for node in TREE.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            found[node.targets[0].id] = node.value.value
    return found


def _mix_page_names() -> list[str]:
    for node in TREE.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MIX_PAGES":
            assert isinstance(node.value, ast.Tuple)
            return [elt.id for elt in node.value.elts if isinstance(elt, ast.Name)]
    raise AssertionError("the locustfile has no MIX_PAGES")


def _classes() -> dict[str, ast.ClassDef]:
    return {node.name: node for node in TREE.body if isinstance(node, ast.ClassDef)}


def _names_used_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def test_locust_lists_the_mix_users_and_the_probes_of_the_locustfile():
    env = {**os.environ, "CAREVAULT_LOAD_CONFIG": ""}
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(load.LOCUSTFILE), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    listed = set(done.stdout.split())
    assert set(load.MIX_CLASSES) <= listed
    assert set(load.PROBE_CLASSES.values()) <= listed


def test_every_page_of_the_mix_is_requested_by_some_mix_user():
    constants = _constants()
    classes = _classes()
    used: set[str] = set()
    # The mix users' own tasks and the shared steps of Staff (login, logout).
    for name in (*load.MIX_CLASSES, "Staff"):
        used |= _names_used_in(classes[name])
    pages = _mix_page_names()
    assert len(pages) >= 15
    assert [page for page in pages if page not in used] == []
    # The names the benchmark reads are the locustfile's.
    assert constants["LOGIN_PAGE"] == load.LOGIN_PAGE
    assert constants["RECORD"] == load.RECORD


def test_the_mix_has_one_user_per_demo_account_and_every_role():
    classes = _classes()
    counts = {}
    accounts: list[str] = []
    for name in load.MIX_CLASSES:
        body = {
            target.id: stmt.value
            for stmt in classes[name].body
            if isinstance(stmt, ast.Assign)
            for target in stmt.targets
            if isinstance(target, ast.Name)
        }
        counts[name] = ast.literal_eval(body["fixed_count"])
        names = ast.literal_eval(body["accounts"])
        assert counts[name] == len(names)
        accounts += names
    assert sum(counts.values()) == load.MIX_USERS
    assert sorted(accounts) == sorted(
        ["admin", "doctor1", "doctor2", "labtech1", "patient1", "patient2", "patient3"]
    )


def test_the_mix_covers_logins_records_notes_lab_uploads_diagnoses_and_the_dashboard():
    constants = _constants()
    pages = {constants[name] for name in _mix_page_names()}
    for page in (
        "login packet",
        "record page",
        "note write",
        "lab upload",
        "diagnosis run",
        "officer dashboard",
        "patient own record",
    ):
        assert page in pages


def test_gevent_stays_out_of_the_benchmark_process():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; import carevault.bench.load, carevault.bench.summary, "
            "carevault.cli.bench; print('gevent' in sys.modules, 'locust' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.split() == ["False", "False"]
