"""`carevault keys rotate` while two app servers serve doctors (issue 13): neither is restarted,
every page still reads, and no stale key cache is ever reported as tampering.

Two `carevault serve --workers 1` processes on one SQLite database read the doctor's patient
pages (their key caches warm under master v1); the rotation runs as the operator would, in a
process of its own; the same pages are read again on both, a new sign-in works on both (the
login key was rewrapped), and the audit log and the security events hold no
``phi.decryption_failed`` / ``phi.signature_failed`` entry.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_servers import EXE, PASSWORD, Client, base_env, django_run, free_port

PAGES_PER_ROUND = 3


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, tuple[int, int]]]:
    data_dir = tmp_path_factory.mktemp("rotation-live")
    env = base_env(data_dir)
    seeded = subprocess.run(
        [EXE, "demo", "--seed-only", "--password", PASSWORD],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    ports = (free_port(), free_port())
    started = []
    for port in ports:
        log = data_dir / f"server-{port}.log"
        with open(log, "wb") as out:
            started.append(
                subprocess.Popen(
                    [EXE, "serve", "--port", str(port), "--workers", "1"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        for port in ports:
            deadline = time.monotonic() + 90
            while Client().get(port, "/healthz")[0] != 200:
                if time.monotonic() > deadline:
                    pytest.fail("a server did not start")
                time.sleep(0.2)  # polling for start-up, bounded by the deadline
        yield data_dir, ports
    finally:
        for server in started:
            os.killpg(server.pid, signal.SIGTERM)
        for server in started:
            server.wait(timeout=30)


def doctor_patients(data_dir: Path) -> list[str]:
    return list(
        django_run(
            base_env(data_dir),
            "from carevault.web.clinic.models import Patient\n"
            "result = sorted(str(p.pk) for p in Patient.objects.filter("
            "user__username__in=['patient1', 'patient2']))\n",
        )
    )


def read_pages(client: Client, ports: tuple[int, int], patients: list[str]) -> list[str]:
    """Read every patient page on both servers; what went wrong, page by page."""
    problems = []
    for _ in range(PAGES_PER_ROUND):
        for port in ports:
            for patient in patients:
                status, body = client.get(port, f"/clinic/patients/{patient}/")
                text = body.decode() if isinstance(body, bytes) else str(body)
                if status != 200:
                    problems.append(f"{port} {patient}: HTTP {status}")
                elif "tampered" in text.lower():
                    problems.append(f"{port} {patient}: shown as tampered")
    return problems


def integrity_alerts(data_dir: Path) -> dict[str, int]:
    return dict(
        django_run(
            base_env(data_dir),
            "from carevault.web.audit.models import AuditEntry\n"
            "actions = ['phi.decryption_failed', 'phi.signature_failed']\n"
            "result = {a: AuditEntry.objects.filter(action=a).count() for a in actions}\n",
        )
    )


@pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")),
    reason="its processes run on a SQLite data directory of their own: the same under unit-pg",
)
def test_rotating_the_master_key_under_live_servers_raises_no_false_alarm(live) -> None:
    data_dir, ports = live
    patients = doctor_patients(data_dir)
    client = Client()
    assert [client.log_in(port, "doctor1", PASSWORD) for port in ports] == [200, 200]
    assert read_pages(client, ports, patients) == []

    rotated = subprocess.run(
        [EXE, "keys", "rotate", "--json"],
        env=base_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rotated.returncode == 0, rotated.stderr[-3000:]

    assert read_pages(client, ports, patients) == []
    # A new sign-in on each server: the login key was rewrapped under the new version too.
    assert [Client().log_in(port, "doctor2", PASSWORD) for port in ports] == [200, 200]
    assert integrity_alerts(data_dir) == {"phi.decryption_failed": 0, "phi.signature_failed": 0}
    status = subprocess.run(
        [EXE, "keys", "status"], env=base_env(data_dir), capture_output=True, text=True, timeout=120
    )
    assert "(0 still under an older master version)" in status.stdout, status.stdout
