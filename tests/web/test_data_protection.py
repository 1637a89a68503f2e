"""No plaintext PHI at rest, in the logs or in error pages.

The raw scans look at what really reached storage, so they seed in a subprocess (the demo
command, as a user runs it) with a fresh data directory and, on PostgreSQL, a fresh database of
its own: the session's seed lives inside test transactions and never reaches a file. Every scan
is shown to work by finding something that *is* stored in the clear (a username, the file
format's magic), so a scan that reads nothing cannot pass.
"""

from __future__ import annotations

import importlib
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from django.utils.module_loading import import_string
from psycopg import sql

from carevault.crypto import streaming
from carevault.web import demo
from carevault.web.clinic.models import Patient

EXE = Path(sys.executable).parent / "carevault"
PASSWORD = "Scan-Demo-Password-42"
PROJECT_URLCONF = settings.ROOT_URLCONF  # before a test swaps in this module's URLs
CLEAR_MARKER = "doctor1"  # a username: stored in the clear on purpose, and printed by the seed

Blobs = list[tuple[str, bytes]]


def find(needles: Iterable[str], blobs: Iterable[tuple[str, bytes]]) -> list[str]:
    """Where each needle occurs: its exact UTF-8 bytes, or the same ignoring ASCII case."""
    needles = list(needles)
    hits = []
    for where, data in blobs:
        lowered = data.lower()
        for needle in needles:
            raw = needle.encode()
            if raw in data or raw.lower() in lowered:
                hits.append(f"{needle!r} in {where}")
    return hits


def files_under(root: Path) -> Blobs:
    return [
        (str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()
    ]


# -- the seeded store ------------------------------------------------------------------------------


@dataclass
class Seeded:
    data_dir: Path
    output: Blobs  # the command's stdout and stderr (its log output)
    database: Blobs  # what the database holds, read as an attacker with its files would


def _postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _pg_params(dbname: str) -> dict[str, object]:
    db = settings.DATABASES["default"]
    params = {"host": db["HOST"], "port": db["PORT"], "user": db["USER"], "dbname": dbname}
    if db.get("PASSWORD"):
        params["password"] = db["PASSWORD"]
    return {k: v for k, v in params.items() if v not in (None, "")}


def _pg_url(dbname: str) -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{dbname}"


@pytest.fixture(scope="module")
def scratch_database() -> Iterator[str | None]:
    """On PostgreSQL, a database of our own for the subprocess (dropped afterwards)."""
    if not _postgres():
        yield None
        return
    name = f"carevault_scan_{secrets.token_hex(6)}"
    with psycopg.connect(**_pg_params("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(**_pg_params("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _read_postgres(dbname: str) -> Blobs:
    """Every row of every table as text, and every bytea value as its raw bytes."""
    blobs: Blobs = []
    with psycopg.connect(**_pg_params(dbname)) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
            )
        ]
        for table in tables:
            rows = conn.execute(
                sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))
            ).fetchall()
            blobs.append((f"table {table}", "\n".join(r[0] for r in rows).encode()))
        binary = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type = 'bytea' ORDER BY 1, 2"
        ).fetchall()
        for table, column in binary:
            values = conn.execute(
                sql.SQL("SELECT {} FROM {}").format(sql.Identifier(column), sql.Identifier(table))
            ).fetchall()
            blobs.append(
                (f"bytea {table}.{column}", b"\n".join(bytes(v[0] or b"") for v in values))
            )
    return blobs


def _read_sqlite(data_dir: Path) -> Blobs:
    db = data_dir / "carevault.sqlite3"
    return [(p.name, p.read_bytes()) for p in sorted(data_dir.glob(db.name + "*"))]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, scratch_database: str | None) -> Seeded:
    data_dir = tmp_path_factory.mktemp("scan")
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("CAREVAULT_DEBUG", None)
    if scratch_database is not None:
        env["DATABASE_URL"] = _pg_url(scratch_database)
    result = subprocess.run(
        [EXE, "demo", "--seed-only", "--password", PASSWORD],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    database = _read_postgres(scratch_database) if scratch_database else _read_sqlite(data_dir)
    return Seeded(
        data_dir=data_dir,
        output=[("stdout", result.stdout), ("stderr", result.stderr)],
        database=database,
    )


PHI = demo.demo_phi()


def test_the_phi_list_covers_every_demo_patient():
    for patient in demo.PATIENTS:
        assert {patient.name, patient.mrn, patient.email, patient.note} <= set(PHI)
    assert demo.DEMO_PDF_NAME in PHI


def test_the_scanner_finds_text_in_either_case_and_nothing_that_is_not_there():
    blobs = [("x", b"..ALICE wonderland-smith..")]
    assert find(["Alice Wonderland-Smith"], blobs) == ["'Alice Wonderland-Smith' in x"]
    assert find(["Bartholomew"], blobs) == []


# -- at rest ---------------------------------------------------------------------------------------


def test_the_database_holds_no_plaintext_phi(seeded):
    assert find(PHI, seeded.database) == []


def test_the_database_scan_reads_what_is_stored_in_the_clear(seeded):
    assert find([CLEAR_MARKER], seeded.database)
    assert sum(len(data) for _, data in seeded.database) > 10_000


def test_the_sqlite_database_file_was_scanned_when_sqlite_is_used(seeded):
    if _postgres():
        assert not (seeded.data_dir / "carevault.sqlite3").exists()
        assert any(where.startswith("bytea vault_patientkey") for where, _ in seeded.database)
    else:
        assert seeded.database[0][0] == "carevault.sqlite3"


def test_the_uploaded_files_hold_no_plaintext(seeded):
    uploads = files_under(seeded.data_dir / "uploads")
    assert len(uploads) == 1  # the demo's lab report
    assert find(PHI, uploads) == []
    for _, data in uploads:
        assert demo.DEMO_PDF not in data
        assert b"%PDF" not in data
        assert b"/Type/Catalog" not in data


def test_the_upload_scan_reads_the_files(seeded):
    # Every stored file starts with the streaming format's magic, in the clear.
    uploads = files_under(seeded.data_dir / "uploads")
    assert len(find([streaming.MAGIC.decode()], uploads)) == len(uploads)


def test_nothing_in_the_data_directory_holds_plaintext_phi(seeded):
    everything = files_under(seeded.data_dir)
    names = {where for where, _ in everything}
    assert "secret_key" in names
    assert any(name.startswith("uploads/") for name in names)
    assert find(PHI, everything) == []
    # File names too: an upload stored under its original name would leak it.
    assert find(PHI, [("file names", "\n".join(sorted(names)).encode())]) == []


# -- logs ------------------------------------------------------------------------------------------


def test_the_seed_logs_no_phi(seeded):
    assert find(PHI, seeded.output) == []


def test_the_log_scan_reads_the_output(seeded):
    assert find([CLEAR_MARKER], seeded.output)


# -- error pages -----------------------------------------------------------------------------------


def test_debug_is_off_unless_asked_for(monkeypatch):
    monkeypatch.delenv("CAREVAULT_DEBUG", raising=False)
    module = importlib.import_module("carevault.web.settings")
    assert importlib.reload(module).DEBUG is False
    assert settings.DEBUG is False


@pytest.fixture
def django_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog, also fed by the "django" loggers (they do not propagate to the root logger)."""
    logger = logging.getLogger("django")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def _no_phi(text: str) -> list[str]:
    return find(PHI, [("page", text.encode())])


def test_a_404_page_does_not_echo_phi_from_the_url(client_for, django_log):
    client = client_for("doctor1")
    query = {"name": "Alice Wonderland-Smith", "dob": "1984-03-14"}
    response = client.get("/no-such-page/", query)
    assert response.status_code == 404
    assert _no_phi(response.content.decode()) == []
    assert "Not Found" in django_log.text  # logged, by path only
    assert _no_phi(django_log.text) == []
    response = client.get("/no-such-page/MRN-10000001/Bartholomew-Quigley")
    assert response.status_code == 404
    assert _no_phi(response.content.decode()) == []
    assert "MRN-10000001" not in response.content.decode()


def _failing_view(request: HttpRequest) -> HttpResponse:
    # What a buggy view looks like: PHI decrypted into local variables, then an error.
    patient = Patient.objects.get(user__username="patient1")
    name, mrn = patient.unseal("name"), patient.unseal("mrn")
    raise RuntimeError(f"lookup failed for {len(name)}-character name, {len(mrn)}-character mrn")


def handler500(request: HttpRequest) -> HttpResponse:
    # The project's own 500 handler if it has one, looked up only when needed (importing the
    # project's URLs at collection time would tie this module to every app's views).
    project = importlib.import_module(PROJECT_URLCONF)
    handler = getattr(project, "handler500", "django.views.defaults.server_error")
    view = import_string(handler) if isinstance(handler, str) else handler
    return view(request)


urlpatterns = [path("test-failing-view/", _failing_view)]


@pytest.mark.urls(__name__)
def test_a_500_page_shows_no_phi_from_the_failing_view(db, users, django_log):
    client = Client(raise_request_exception=False)
    client.force_login(users["doctor1"])
    response = client.get("/test-failing-view/")
    assert response.status_code == 500
    page = response.content.decode()
    assert _no_phi(page) == []
    assert "Traceback" not in page
    assert "RuntimeError" not in page
    assert "Internal Server Error" in django_log.text  # logged, with its traceback
    assert "RuntimeError" in django_log.text
    assert _no_phi(django_log.text) == []  # but not the values of the view's variables
