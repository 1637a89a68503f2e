"""`carevault worker`: a one-line error and a non-zero exit when it cannot run; --burst --json
on an empty queue reports what it did and exits 0 (the kill tests are tests/web/jobs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def worker(data_dir: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir), "CAREVAULT_TASKS": "database"}
    environ.pop("DATABASE_URL", None)
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return subprocess.run(
        [sys.executable, "-m", "carevault.cli", "worker", *argv],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("carevault: error: ")
    assert "Traceback" not in result.stderr
    return lines[-1]


def test_it_refuses_an_unknown_queue(tmp_path):
    assert "unknown queue bogus" in one_line_error(worker(tmp_path, "--queues", "bogus"))


def test_it_says_no_worker_is_needed_when_tasks_run_immediately(tmp_path):
    line = one_line_error(worker(tmp_path, CAREVAULT_TASKS="immediate"))
    assert "no worker needed" in line


def test_it_refuses_a_database_without_tables(tmp_path):
    assert "no CareVault tables" in one_line_error(worker(tmp_path, "--burst"))


def test_a_burst_on_an_empty_queue_reports_and_exits(tmp_path):
    migrate = subprocess.run(
        [sys.executable, "-m", "carevault.cli", "manage", "migrate"],
        env={
            **os.environ,
            "CAREVAULT_DATA_DIR": str(tmp_path),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr[-1000:]
    result = worker(tmp_path, "--burst", "--json")
    assert result.returncode == 0, result.stderr[-1000:]
    report = json.loads(result.stdout)
    assert (report["backend"], report["tasks"], report["queues"]) == (
        "database",
        0,
        ["default", "long"],
    )
