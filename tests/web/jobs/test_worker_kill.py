"""A killed worker's task is retried without loss (issue 16): `carevault worker` as a real
process on a database file (and on PostgreSQL), SIGKILLed in the middle of a re-encryption job;
a second worker hands the dead one's task back to the queue, resumes the job from its last
checkpoint, and every value and file still decrypts to what it held, none left below the floor.

The kill is the fault injector's (``CAREVAULT_FAULT_KILL_AFTER``): a real SIGKILL of the worker
process at a fixed unit of work, after some batches have committed and before the last, so the
test is the same on a busy machine as on an idle one (no sleeps, no timing)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SCENARIO = Path(__file__).with_name("scenario.py")
PG_SERVER = "postgres://postgres@127.0.0.1:5432"
PASSWORD = "Kill-Test-Pass-42"


def _env(data_dir: Path, database_url: str) -> dict[str, str]:
    env = {
        **os.environ,
        "CAREVAULT_DATA_DIR": str(data_dir),
        "CAREVAULT_TASKS": "database",
        "CAREVAULT_REENCRYPT_IN_BACKGROUND": "1",
        # Small batches: several checkpoints before the kill, several after.
        "CAREVAULT_REENCRYPT_BATCH": "10",
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "CAREVAULT_FAULT_KILL_AFTER"):
        env.pop(name, None)
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def _run(env: dict[str, str], *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Database:
    """Reads the job's rows the way an operator would (the test process has its own database)."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.data_dir = data_dir
        self.url = database_url

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.url:
            with sqlite3.connect(self.data_dir / "carevault.sqlite3") as db:
                return list(db.execute(sql))
        import psycopg

        with psycopg.connect(self.url) as db:
            return list(db.execute(sql))  # type: ignore[arg-type]


def _pg_available() -> bool:
    return shutil.which("psql") is not None and (
        subprocess.run(
            ["psql", "--no-psqlrc", "-q", "-c", "select 1", f"{PG_SERVER}/postgres"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    if not _pg_available():
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    name = f"cv_jobs_{uuid.uuid4().hex[:10]}"
    psql = ["psql", "--no-psqlrc", "-q", "-c"]
    subprocess.run([*psql, f'create database "{name}"', f"{PG_SERVER}/postgres"], check=True)
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        subprocess.run(
            [*psql, f'drop database if exists "{name}" with (force)', f"{PG_SERVER}/postgres"],
            check=False,
            capture_output=True,
        )


def test_a_worker_killed_mid_job_loses_nothing_and_the_next_worker_finishes_the_job(
    tmp_path: Path, database_url: str
) -> None:
    env = _env(tmp_path, database_url)
    _ok(_run(env, "-m", "carevault.cli", "demo", "--seed-only", "--password", PASSWORD))
    prepared = json.loads(_ok(_run(env, str(SCENARIO), "prepare", "6")))
    db = Database(tmp_path, database_url)
    run_id = prepared["run"]
    [(total,)] = db.rows(f"select total from jobs_jobrun where id = {run_id}")
    assert total > 40  # enough records for batches before and after the kill

    # The first worker dies (SIGKILL, no clean-up) at its 40th unit of work: 3 batches or more
    # of 10 records are committed by then, and the job is not done.
    first = _run(env, "-m", "carevault.cli", "worker", CAREVAULT_FAULT_KILL_AFTER="40")
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    [(state, done, attempts)] = db.rows(
        f"select state, done, attempts from jobs_jobrun where id = {run_id}"
    )
    assert (state, attempts) == ("running", 1)
    assert 0 < done < total  # progress was recorded, and the job was cut short
    [(status,)] = db.rows("select status from django_tasks_database_dbtaskresult")
    assert status == "RUNNING"  # what django_tasks_db alone would leave for ever

    second = json.loads(_ok(_run(env, "-m", "carevault.cli", "worker", "--burst", "--json")))
    assert second["requeued_at_start"] == 1
    [(state, done, attempts, error)] = db.rows(
        f"select state, done, attempts, error from jobs_jobrun where id = {run_id}"
    )
    assert (state, done, attempts, error) == ("done", total, 2, "")
    [(status, workers)] = db.rows(
        "select status, worker_ids from django_tasks_database_dbtaskresult"
    )
    workers = json.loads(workers) if isinstance(workers, str) else workers
    assert status == "SUCCESSFUL"
    assert len(workers) == 2
    [(job_status, scanned)] = db.rows(
        f"select status, scanned from vault_reencryptionjob where id = {prepared['job']}"
    )
    assert (job_status, scanned) == ("done", total)

    # Decrypt everything: each value and file holds what it held before, nothing is left below
    # the floor (a value encrypted twice would not decrypt to its plaintext).
    checked = json.loads(_ok(_run(env, str(SCENARIO), "check")))
    assert checked["snapshot"] == prepared["snapshot"]
    assert (checked["below"], checked["weak_files"]) == (0, 0)


REDIS_DB_URL = "redis://127.0.0.1:6379/13"  # this suite's own database number


@pytest.fixture
def redis_queue() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_DB_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis at 127.0.0.1:6379")

    def clear() -> None:
        for key in client.scan_iter("rq:*"):
            client.delete(key)
        for key in client.scan_iter("cv-kill-test*"):
            client.delete(key)

    clear()
    try:
        yield REDIS_DB_URL
    finally:
        clear()


def test_on_redis_a_job_whose_worker_dies_is_retried_and_resumes_where_it_stopped(
    tmp_path: Path, redis_queue: str
) -> None:
    """RQ runs each job in a work horse; the fault injector SIGKILLs the horse at its 40th unit
    of work, every attempt. RQ sees the horse die, the job's retries queue it again, and each
    attempt resumes from the last checkpoint, so the job gets done on a later attempt."""
    env = _env(tmp_path, "")
    env.update(
        CAREVAULT_TASKS="redis", REDIS_URL=redis_queue, CAREVAULT_CACHE_PREFIX="cv-kill-test"
    )
    _ok(_run(env, "-m", "carevault.cli", "demo", "--seed-only", "--password", PASSWORD))
    prepared = json.loads(_ok(_run(env, str(SCENARIO), "prepare", "6")))
    db = Database(tmp_path, "")
    run_id = prepared["run"]
    [(total,)] = db.rows(f"select total from jobs_jobrun where id = {run_id}")
    assert total > 40

    worker = _run(
        env, "-m", "carevault.cli", "worker", "--burst", "--json", CAREVAULT_FAULT_KILL_AFTER="40"
    )
    assert "Work-horse terminated unexpectedly" in worker.stderr
    [(state, done, attempts)] = db.rows(
        f"select state, done, attempts from jobs_jobrun where id = {run_id}"
    )
    assert (state, done) == ("done", total)
    assert attempts >= 2
    checked = json.loads(_ok(_run(env, str(SCENARIO), "check")))
    assert checked["snapshot"] == prepared["snapshot"]
    assert (checked["below"], checked["weak_files"]) == (0, 0)
