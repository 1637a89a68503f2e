"""The hospital deployment of docs/deployment.md, run for real on one machine: nginx ends TLS
(the very file docs/deploy/nginx.conf) in front of two app servers (``carevault serve``, one
gunicorn worker each), one PostgreSQL database, one Redis, and a background worker
(``carevault worker``). Every request below goes through the proxy over HTTPS, from client
addresses of their own (127.0.0.2, 127.0.0.3, ...: all of 127/8 is loopback), as browsers on
different ward computers would.

What it shows: a session started on one app server is good on the other; what one writes the
other reads; the app sees each client's own address through the proxy (so an attacker's
address block does not lock out the ward); HTTPS is enforced with secure cookies and no
redirect loop; background work enqueued by an app server runs on the worker; the audit log of
the whole run verifies.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError

import pytest

import carevault
from carevault.crypto import packets
from carevault.crypto.tls import ensure_certificate

EXE = Path(sys.executable).parent / "carevault"
SRC = Path(carevault.__file__).resolve().parents[1]
NGINX_CONF = SRC.parent / "docs" / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PG_URL = os.environ.get("CAREVAULT_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CAREVAULT_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
PASSWORD = "Correct-Horse-Battery-9"
USER_AGENT = "carevault-deployment-test"

pytestmark = pytest.mark.deployment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, ready: Any, log: Path | None = None, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            pytest.fail(f"{what} did not become ready: {tail}")
        time.sleep(0.2)  # polling a process's start-up, bounded by the deadline


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class _SourceHTTPSHandler(urllib.request.HTTPSHandler):
    """HTTPS from a chosen loopback address (a ward computer of its own)."""

    def __init__(self, context: ssl.SSLContext, source: str) -> None:
        super().__init__(context=context)
        self._ctx, self._source = context, source

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(  # type: ignore[no-any-return]
            http.client.HTTPSConnection, req, context=self._ctx, source_address=(self._source, 0)
        )


class Browser:
    """A browser on one ward computer: its own cookies, its own address, HTTPS to the proxy."""

    def __init__(self, base: str, context: ssl.SSLContext, source: str) -> None:
        self.base, self.jar = base, CookieJar()
        self.opener = urllib.request.build_opener(
            _SourceHTTPSHandler(context, source), urllib.request.HTTPCookieProcessor(self.jar)
        )

    def send(
        self, method: str, path: str, body: Any = None, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        headers = {
            "User-Agent": USER_AGENT,
            "X-CSRFToken": self.cookie("csrftoken"),
            # What a browser sends on a same-origin POST over HTTPS (Django checks it).
            "Origin": self.base,
            "Referer": self.base + "/",
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with self.opener.open(request, timeout=60) as reply:
                status, head, raw = reply.status, dict(reply.headers), reply.read()
        except HTTPError as exc:
            status, head, raw = exc.code, dict(exc.headers), exc.read()
        try:
            return status, head, json.loads(raw)
        except ValueError:
            return status, head, raw.decode(errors="replace")

    def get(self, path: str) -> tuple[int, dict[str, str], Any]:
        return self.send("GET", path)

    def cookie(self, name: str) -> str:
        return next((c.value or "" for c in self.jar if c.name == name), "")

    def log_in(self, username: str, password: str = PASSWORD) -> int:
        if not self.cookie("csrftoken"):
            self.get("/accounts/login/")
        status, _, challenge = self.get("/accounts/login/challenge/")
        if status != 200:
            return status
        packet = packets.seal_login_packet(challenge, username, password, challenge["issued"])
        return self.send("POST", "/accounts/login/packet/", packet)[0]


@dataclass
class Deployment:
    https_port: int
    http_port: int
    app_ports: tuple[int, int]
    context: ssl.SSLContext
    env: dict[str, str]
    root: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"https://localhost:{self.https_port}"

    def browser(self, source: str) -> Browser:
        return Browser(self.base, self.context, source)

    def command(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """An operator's command on one of the hosts (same configuration as the servers)."""
        return subprocess.run(
            [str(EXE), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def upstreams_used(self) -> set[str]:
        log = (self.root / "nginx" / "access.log").read_text()
        return set(re.findall(r" (127\.0\.0\.1:\d+)$", log, flags=re.MULTILINE))


def _database(name: str, action: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=10) as connection:
        if action == "create":
            connection.execute(f'CREATE DATABASE "{name}"')
        else:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _start(
    deployment: Deployment, name: str, args: list[str], env: dict[str, str] | None = None
) -> Path:
    log = deployment.root / f"{name}.log"
    with open(log, "wb") as out:
        deployment.processes[name] = subprocess.Popen(
            args,
            env=env or deployment.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return log


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not os.access(NGINX, os.X_OK):
        pytest.fail("nginx is missing: `make deploy-deps` installs it (Debian's nginx-light)")
    root = tmp_path_factory.mktemp("deployment")
    db_name = f"cv_deploy_{uuid.uuid4().hex[:10]}"
    prefix = f"cvdeploy-{uuid.uuid4().hex[:10]}"
    # What the hosts share: the database, Redis, the data directory (a shared volume in a real
    # deployment: it holds only encrypted uploads, wrapped keys, sealed models and signed audit
    # checkpoints), the secret key and the master key (each host's own file, never on the share).
    master_key = root / "master-key" / "master.json"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    for name in ("DJANGO_SETTINGS_MODULE", "CAREVAULT_HTTPS", "REDIS_URL", "DATABASE_URL"):
        env.pop(name, None)
    https_port, http_port = free_port(), free_port()
    app_ports = (free_port(), free_port())
    env.update(
        {
            "DATABASE_URL": PG_URL.rsplit("/", 1)[0] + "/" + db_name,
            "REDIS_URL": REDIS_URL,
            "CAREVAULT_TASKS": "redis",
            "CAREVAULT_CACHE_PREFIX": prefix,
            "CAREVAULT_DATA_DIR": str(root / "shared-data"),
            "CAREVAULT_MASTER_KEY_FILE": str(master_key),
            "CAREVAULT_SECRET_KEY": "deployment-test-" + uuid.uuid4().hex + uuid.uuid4().hex,
            "CAREVAULT_HTTPS": "true",
            "CAREVAULT_TRUSTED_PROXIES": "1",
            "CAREVAULT_ALLOWED_HOSTS": "localhost",
            "CAREVAULT_CSRF_TRUSTED_ORIGINS": f"https://localhost:{https_port}",
        }
    )
    cert, key = ensure_certificate(root / "tls", ["localhost"])
    context = ssl.create_default_context(cafile=str(cert))
    deployment = Deployment(https_port, http_port, app_ports, context, env, root)
    _database(db_name, "create")
    try:
        # Once, before any app server starts (docs/deployment.md, "Upgrades"): schema and demo.
        seeded = deployment.command("demo", "--seed-only", "--password", PASSWORD)
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        logs = [
            _start(
                deployment,
                f"app{n}",
                [str(EXE), "serve", "--no-worker", "--port", str(port), "--workers", "1"],
            )
            for n, port in enumerate(app_ports)
        ]
        worker_log = _start(deployment, "worker", [str(EXE), "worker", "--backend", "redis"])
        nginx_dir = root / "nginx"
        nginx_dir.mkdir()
        conf = (
            NGINX_CONF.read_text()
            .replace("@PREFIX@", str(nginx_dir))
            .replace("@LISTEN_HTTPS@", f"127.0.0.1:{https_port}")
            .replace("@LISTEN_HTTP@", f"127.0.0.1:{http_port}")
            .replace("@SERVER_NAME@", "localhost")
            .replace("@CERT@", str(cert))
            .replace("@KEY@", str(key))
            .replace("@UPSTREAMS@", " ".join(f"server 127.0.0.1:{p};" for p in app_ports))
            .replace("@MAX_BODY@", "11m")
        )
        assert "@" not in re.sub(r"#.*", "", conf), "a placeholder was left unfilled"
        (nginx_dir / "nginx.conf").write_text(conf)
        nginx_log = _start(
            deployment,
            "nginx",
            # The master stays in the foreground so the test owns it; as root it would drop
            # its workers to nobody, who could not write the test's directory.
            [
                NGINX,
                "-p",
                str(nginx_dir),
                "-c",
                str(nginx_dir / "nginx.conf"),
                "-g",
                "daemon off;" + (" user root;" if os.geteuid() == 0 else ""),
            ],
        )
        for port, log in zip(app_ports, logs, strict=True):
            wait_for(f"app server on {port}", lambda p=port: port_open(p), log)
        wait_for("nginx", lambda: port_open(https_port), nginx_log)
        wait_for(
            "the app behind the proxy",
            lambda: _healthy(deployment),
            logs[0],
        )
        assert deployment.processes["worker"].poll() is None, worker_log.read_text()[-3000:]
        yield deployment
    finally:
        for process in deployment.processes.values():
            _stop(process)
        _database(db_name, "drop")
        import redis

        connection = redis.Redis.from_url(REDIS_URL)
        keys = list(connection.scan_iter(match=f"*{prefix}*"))
        if keys:
            connection.delete(*keys)
        connection.close()


def _healthy(deployment: Deployment) -> bool:
    try:
        return deployment.browser("127.0.0.1").get("/healthz")[0] == 200
    except (URLError, OSError):
        return False


def test_a_session_started_through_the_proxy_is_good_on_every_app_server(
    deployment: Deployment,
) -> None:
    browser = deployment.browser("127.0.0.2")
    assert browser.log_in("doctor1") == 200
    before = len((deployment.root / "nginx" / "access.log").read_text().splitlines())
    statuses = [browser.get("/clinic/doctor/")[0] for _ in range(6)]
    assert statuses == [200] * 6  # never sent back to the login page by the other server
    lines = (deployment.root / "nginx" / "access.log").read_text().splitlines()[before:]
    served_by = {line.rsplit(" ", 1)[-1] for line in lines}
    assert served_by == {f"127.0.0.1:{p}" for p in deployment.app_ports}


def test_what_one_app_server_writes_the_other_reads(deployment: Deployment) -> None:
    browser = deployment.browser("127.0.0.3")
    assert browser.log_in("doctor1") == 200
    status, _, patients = browser.get("/api/v1/patients")
    assert status == 200, patients
    patient = patients["results"][0]["id"]
    marker = f"Deployment check {uuid.uuid4().hex[:8]}"
    status, _, created = browser.send("POST", f"/api/v1/patients/{patient}/notes", {"body": marker})
    assert status == 201, created
    # Round robin: two reads in a row land on both servers; both show the note.
    pages = [browser.get(f"/clinic/patients/{patient}/") for _ in range(2)]
    assert [status for status, _, _ in pages] == [200, 200]
    assert all(marker in page for _, _, page in pages)


def test_the_app_sees_each_client_address_through_the_proxy(deployment: Deployment) -> None:
    """An attacker's address is blocked on every app server; the ward computer next to it is
    not (without CAREVAULT_TRUSTED_PROXIES the app would see only the proxy's address, and one
    block would lock out the whole hospital)."""
    blocked = deployment.command(
        "manage",
        "shell",
        "-c",
        "from carevault.web.login import throttle; "
        "throttle.block_address('127.0.0.4', 'deployment test', seconds=600)",
    )
    assert blocked.returncode == 0, blocked.stderr[-2000:]
    attacker = deployment.browser("127.0.0.4")
    honest = deployment.browser("127.0.0.5")
    assert [attacker.log_in("doctor2") for _ in range(4)] == [429] * 4
    assert honest.log_in("doctor2") == 200
    activity = deployment.command("security", "status", "--json")
    assert activity.returncode == 0, activity.stderr[-2000:]


def test_https_is_enforced_with_secure_cookies_and_no_redirect_loop(
    deployment: Deployment,
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", deployment.http_port, timeout=30)
    connection.request("GET", "/accounts/login/", headers={"Host": "localhost"})
    reply = connection.getresponse()
    assert reply.status == 301
    assert reply.getheader("Location", "").startswith("https://localhost")
    connection.close()
    browser = deployment.browser("127.0.0.6")
    status, headers, _ = browser.get("/accounts/login/")
    assert status == 200  # HTTPS through the proxy is not redirected again
    assert "max-age=31536000" in headers["Strict-Transport-Security"]
    assert all(cookie.secure for cookie in browser.jar)
    # Straight to an app server, bypassing the proxy, is plain HTTP: redirected, not served.
    direct = http.client.HTTPConnection("127.0.0.1", deployment.app_ports[0], timeout=30)
    direct.request("GET", "/accounts/login/", headers={"Host": "localhost"})
    assert direct.getresponse().status == 301
    direct.close()


def test_background_work_enqueued_by_an_app_server_runs_on_the_worker(
    deployment: Deployment,
) -> None:
    officer = deployment.browser("127.0.0.7")
    assert officer.log_in("admin") == 200
    assert officer.get("/security/jobs/")[0] == 200
    status, _, _ = officer.send("POST", "/security/jobs/queue/", form={"kind": "audit.seal"})
    assert status == 200  # redirected back to the jobs page, which says it was queued
    query = (
        "import json; from carevault.web.jobs.models import JobRun; "
        "run = JobRun.objects.filter(kind='audit.seal', requested_by='admin').latest('pk'); "
        "print('RUN=' + json.dumps([run.state, run.worker]))"
    )

    def finished() -> bool:
        done = deployment.command("manage", "shell", "-c", query)
        assert done.returncode == 0, done.stderr[-2000:]
        line = next(x for x in done.stdout.splitlines() if x.startswith("RUN="))
        state, worker = json.loads(line.removeprefix("RUN="))
        assert state != "failed", done.stdout
        return bool(state == "done" and worker)

    wait_for("the seal job on the worker", finished, deployment.root / "worker.log", seconds=180)


def test_the_audit_log_of_the_whole_run_verifies(deployment: Deployment) -> None:
    verified = deployment.command("audit", "verify")
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
