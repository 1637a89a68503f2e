"""Real processes, racing: two appenders and two sealers on one database (SQLite, and
PostgreSQL when the suite runs on it) produce a log that verifies, in which every entry is
sealed exactly once; a sealer killed between its commit and its anchor is repaired by the next
``audit verify``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import carevault

SRC = Path(carevault.__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "carevault"
APPENDS = 60

PROGRAM = """
import json, os, sys
import django
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'carevault.web.settings')
django.setup()
from carevault.web.audit import anchor, sealing
from carevault.web.audit.log import record, verify_chain
from carevault.web.audit.models import AuditBatch, AuditEntry
role, n = sys.argv[1], int(sys.argv[2])
result = None
if role in ('append', 'seal'):
    print('READY', flush=True)
    sys.stdin.readline()  # every racer starts at once
if role == 'append':
    for i in range(n):
        record('test.concurrent', details={'pid': os.getpid(), 'i': i})
elif role == 'seal':
    sealed = 0
    for _ in range(n):
        sealed += sealing.seal().entries
    result = sealed
elif role == 'killed-sealer':
    record('test.before-kill')
    def killed(body):
        os._exit(9)  # the process dies right after the batch committed, before the anchor
    anchor.append_batch = killed
    sealing.seal()
elif role == 'hold-lock':
    from django.db import transaction
    with transaction.atomic():
        assert sealing._lock()
        print('READY', flush=True)
        sys.stdin.readline()
elif role == 'seal-once':
    record('test.waiting')
    result = sealing.seal().as_dict()
elif role == 'setup':
    record('test.setup')  # the audit key, made once before the race
    result = sealing.seal().entries
elif role == 'facts':
    report = verify_chain()
    result = {
        'report': report.as_dict(),
        'batch_counts': sum(AuditBatch.objects.exclude(number=0).values_list('count', flat=True)),
        'marked': AuditEntry.objects.filter(batch__isnull=False).count(),
        'latest_anchored': (anchor.latest_checkpoint() or {}).get('batch'),
        'last_batch': AuditBatch.objects.order_by('-number').values_list('number', flat=True)[0],
    }
print('RESULT=' + json.dumps(result), flush=True)
"""


def _env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir), "PYTHONPATH": str(SRC)}
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "REDIS_URL"):
        env.pop(name, None)
    if database_url:
        env["DATABASE_URL"] = database_url
    # The appenders seal too, after their commits, as a server's workers would.
    env.update({"CAREVAULT_AUDIT_SEAL_EVERY": "10", "CAREVAULT_AUDIT_SEAL_CHECK_SECONDS": "0"})
    return env


def _run(env: dict[str, str], role: str, n: int = 0) -> object:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, role, str(n)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT="))
    return json.loads(line.removeprefix("RESULT="))


def _pg_base() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A migrated database of its own, with the audit key made: the environment to run in."""
    if request.param == "sqlite":
        env = _env(tmp_path, None)
        subprocess.run([EXE, "manage", "migrate", "-v0"], env=env, check=True, timeout=300)
        _run(env, "setup")
        yield env
        return
    base = _pg_base()
    if base is None:
        pytest.skip("PostgreSQL: run with DATABASE_URL=postgres://... (make unit-pg)")
    import psycopg

    name = f"cv_audit_race_{uuid.uuid4().hex[:10]}"
    admin = urlsplit(base)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        env = _env(tmp_path, urlsplit(base)._replace(path=f"/{name}").geturl())
        subprocess.run([EXE, "manage", "migrate", "-v0"], env=env, check=True, timeout=300)
        _run(env, "setup")
        yield env
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_appenders_and_two_sealers_racing_leave_a_log_that_verifies(database):
    racers = [("append", APPENDS), ("append", APPENDS), ("seal", 40), ("seal", 40)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROGRAM, role, str(n)],
            env=database,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role, n in racers
    ]
    for process in processes:  # every racer set up, then all released together
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "READY"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    facts = _run(database, "facts")
    assert isinstance(facts, dict)
    report = facts["report"]
    assert report["ok"], report["problems"]
    assert report["entries"] == 1 + 2 * APPENDS
    # Every entry sealed at most once: the batches' counts add up to the entries marked.
    assert facts["batch_counts"] == facts["marked"] == report["sealed"]
    verify = subprocess.run(
        [EXE, "audit", "verify", "--json"], env=database, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["unsealed"] == 0


def test_a_sealer_killed_between_its_commit_and_its_anchor_is_repaired_by_audit_verify(database):
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, "killed-sealer", "0"],
        env=database,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 9, done.stderr[-3000:]
    facts = _run(database, "facts")
    assert isinstance(facts, dict)
    assert facts["latest_anchored"] == facts["last_batch"] - 1  # committed, not anchored
    assert facts["report"]["ok"], facts["report"]["problems"]
    verify = subprocess.run(
        [EXE, "audit", "verify", "--json"], env=database, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    facts = _run(database, "facts")
    assert isinstance(facts, dict)
    assert facts["latest_anchored"] == facts["last_batch"]


def test_a_second_sealer_skips_while_the_first_holds_the_lock(database):
    if "DATABASE_URL" not in database:
        pytest.skip("SQLite: the write transaction itself is the lock (the second one waits)")
    holder = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, "hold-lock", "0"],
        env=database,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "READY"
        result = _run(database, "seal-once")
        assert isinstance(result, dict)
        assert result["skipped"] is True
        assert result["batches"] == []
    finally:
        assert holder.stdin is not None
        holder.stdin.write("done\n")
        holder.stdin.flush()
        holder.communicate(timeout=60)
    result = _run(database, "seal-once")
    assert isinstance(result, dict)
    assert result["skipped"] is False
    assert result["entries"] == 2
