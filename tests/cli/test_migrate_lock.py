"""``carevault serve`` migrates on start: app servers started together on one fresh database
must not race to apply the same migrations (cli/_django.py ``migrate``)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

import carevault

SRC = Path(carevault.__file__).resolve().parents[1]
PG_URL = os.environ.get("CAREVAULT_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
MIGRATE = (
    "from carevault.cli._django import django_setup, migrate\n"
    "django_setup()\n"
    "migrate()\n"
    "from django.db import connection\n"
    "print(len(connection.introspection.table_names()))\n"
)


def _env(tmp_path: Path, name: str, database_url: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "CAREVAULT_DATA_DIR": str(tmp_path / name)}
    for key in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL"):
        env.pop(key, None)
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def _migrate_together(envs: list[dict[str, str]]) -> list[subprocess.CompletedProcess[str]]:
    started = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for env in envs
    ]
    results = []
    for process in started:
        out, err = process.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def test_three_servers_migrating_one_fresh_postgresql_database_at_once_all_succeed(
    tmp_path: Path,
) -> None:
    name = f"cv_migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=10) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        url = PG_URL.rsplit("/", 1)[0] + "/" + name
        results = _migrate_together([_env(tmp_path, "shared", url) for _ in range(3)])
        assert [r.returncode for r in results] == [0, 0, 0], [r.stderr[-2000:] for r in results]
        tables = {r.stdout.strip() for r in results}
        assert len(tables) == 1  # all see one complete schema
        assert int(tables.pop()) > 20
    finally:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_processes_migrating_one_fresh_sqlite_database_at_once_both_succeed(
    tmp_path: Path,
) -> None:
    results = _migrate_together([_env(tmp_path, "shared", None) for _ in range(2)])
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    assert (tmp_path / "shared" / "migrate.lock").exists()


@pytest.fixture(autouse=True)
def _no_ambient_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
