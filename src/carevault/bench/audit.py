"""``carevault bench audit``: audit appends per second with two writer processes, the chained
log (every append locks the one head row) against the sealed log (each entry its own MAC, no
shared row), side by side, on SQLite and, given a server, on PostgreSQL.

Each measurement runs in a scratch data directory (and, on PostgreSQL, a scratch database that
is dropped afterwards): a prepare process migrates and makes the audit key, then two writer
processes, released together, each append N entries, one transaction each, offered to no
observer (the security layer's work is the same in both and not what is measured). The chained
append is the old ``record()``'s storage path, kept here as the baseline. Wall time is from the
release to the last writer's end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import carevault

SRC = Path(carevault.__file__).resolve().parents[1]
WRITERS = 2
MODES = ("chained", "sealed")

_CHILD = """
import sys
from carevault.bench import audit
audit.child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


# -- in the child processes ------------------------------------------------------------------------


def _setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "carevault.web.settings")
    django.setup()


def _append_chained(i: int) -> None:
    """The chained log's append, as ``record()`` stored an entry before batches."""
    from django.db import transaction
    from django.utils import timezone

    from carevault.web.audit import log
    from carevault.web.audit.models import AuditEntry, AuditHead

    with transaction.atomic():
        head, _ = AuditHead.objects.select_for_update().get_or_create(id=1)
        entry = AuditEntry(
            seq=head.seq + 1,
            at=timezone.now().replace(microsecond=0),
            action="bench.append",
            outcome="ok",
            details={"i": i},
            prev_digest=head.digest,
        )
        entry.digest = log._digest(head.digest, entry)
        entry.save()
        head.seq, head.digest = entry.seq, entry.digest
        head.save(update_fields=["seq", "digest"])


def _append_sealed(i: int) -> None:
    from carevault.web.audit.log import record, unobserved

    with unobserved():
        record("bench.append", details={"i": i})


def child(role: str, mode: str, n: int) -> None:
    _setup()
    if role == "prepare":
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        # The audit key, made before the race (by an entry of the log's own kind).
        (_append_chained if mode == "chained" else _append_sealed)(-1)
        print("READY", flush=True)
        return
    append = _append_chained if mode == "chained" else _append_sealed
    print("READY", flush=True)
    sys.stdin.readline()
    for i in range(n):
        append(i)
    if mode == "sealed":
        from carevault.web.audit import sealing

        sealing.seal()  # what is left, so the run ends with a sealed, checkable log
    print("DONE", flush=True)


# -- in the parent ---------------------------------------------------------------------------------


def _env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir), "PYTHONPATH": str(SRC)}
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "REDIS_URL"):
        env.pop(name, None)
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def _spawn(env: dict[str, str], role: str, mode: str, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and program
        [sys.executable, "-c", _CHILD, role, mode, str(n)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _expect(process: subprocess.Popen[str], word: str) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != word:
        process.kill()
        raise RuntimeError(f"a benchmark process failed (said {line!r}, not {word})")


@contextmanager
def _scratch_database(base: str | None) -> Iterator[str | None]:
    if base is None:
        yield None
        return
    import psycopg

    name = f"cv_bench_audit_{uuid.uuid4().hex[:10]}"
    admin = urlsplit(base)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(base)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _measure(mode: str, n: int, postgres: str | None) -> float:
    """Entries per second of WRITERS processes appending n entries each."""
    with (
        tempfile.TemporaryDirectory(prefix="carevault-bench-audit-") as scratch,
        _scratch_database(postgres) as url,
    ):
        env = _env(Path(scratch), url)
        prepare = _spawn(env, "prepare", mode, 0)
        _expect(prepare, "READY")
        prepare.communicate(timeout=600)
        writers = [_spawn(env, "write", mode, n) for _ in range(WRITERS)]
        for writer in writers:
            _expect(writer, "READY")
        started = time.perf_counter()
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for writer in writers:
            _expect(writer, "DONE")
        elapsed = time.perf_counter() - started
        for writer in writers:
            writer.communicate(timeout=60)
            if writer.returncode != 0:
                raise RuntimeError(f"a {mode} writer failed ({writer.returncode})")
    return WRITERS * n / elapsed


def run(*, quick: bool = False, postgres: str | None = None) -> dict[str, Any]:
    n = 150 if quick else 1500
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    if postgres:
        backends.append(("postgresql", postgres))
    rows = []
    for backend, url in backends:
        rates = {mode: _measure(mode, n, url) for mode in MODES}
        rows.append(
            {
                "backend": backend,
                "writers": WRITERS,
                "entries_per_writer": n,
                "chained_per_s": round(rates["chained"], 1),
                "sealed_per_s": round(rates["sealed"], 1),
                "ratio": round(rates["sealed"] / rates["chained"], 2),
            }
        )
    return {"quick": quick, "rows": rows}


def render(result: dict[str, Any]) -> str:
    lines = [
        f"audit appends, {WRITERS} writer processes, one transaction per entry "
        "(entries/s; higher is better)",
        f"{'backend':<11} {'per writer':>10} {'chained (head row)':>19} {'sealed (no lock)':>17} "
        f"{'ratio':>6}",
    ]
    for row in result["rows"]:
        lines.append(
            f"{row['backend']:<11} {row['entries_per_writer']:>10} {row['chained_per_s']:>19} "
            f"{row['sealed_per_s']:>17} {row['ratio']:>5}x"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - a debugging aid
    print(json.dumps(run(quick=True)))
