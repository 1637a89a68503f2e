"""One security state for every process (issue 12), shown on the real thing: two app servers,
each ``carevault serve`` with its default two gunicorn workers, on one SQLite database; requests
alternate between the servers, so any state kept per process would show as a doubled threshold.
Once with the shared store on the database, once with both servers on one Redis.

Each threshold holds exactly once: an account is suspended after exactly the configured number
of checked passwords, the API's diagnosis budget allows exactly 20 queries an hour, an address
block and its lifting reach every process at once, and a challenge consumed on one server
cannot be used on the other.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import HTTPCookieProcessor, Request, build_opener

import pytest

import carevault
from carevault.crypto import packets
from carevault.modelguard import dataset

EXE = Path(sys.executable).parent / "carevault"
SRC = Path(carevault.__file__).resolve().parents[1]
PASSWORD = "Correct-Horse-Battery-9"
REDIS_URL = os.environ.get("CAREVAULT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SUSPEND_AFTER = 6
API_BUDGET_PER_HOUR = 20  # modelguard.guard.DEFAULT_CONFIG, ClientKind.API
USER_AGENT = "carevault-multiprocess-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir), "PYTHONPATH": str(SRC)}
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "CAREVAULT_HTTPS", "REDIS_URL"):
        env.pop(name, None)
    env.update(
        {
            "CAREVAULT_LOGIN_SUSPEND_AFTER": str(SUSPEND_AFTER),
            # Only the thresholds under test may act: no back-off, no address block by counts,
            # no security-layer responses (their own tests are elsewhere).
            "CAREVAULT_LOGIN_BACKOFF_AFTER": "1000",
            "CAREVAULT_LOGIN_ADDRESS_MAX_FAILURES": "100000",
            "CAREVAULT_LOGIN_ADDRESS_MAX_USERNAMES": "100000",
            "CAREVAULT_LOGIN_CHALLENGES_PER_MINUTE": "100000",
            "CAREVAULT_SECURITY_EVENTS": "false",
        }
    )
    return env


def django_run(env: dict[str, str], code: str) -> Any:
    """Run ``code`` in a process of its own on the servers' data (as an operator's command
    would); it sets ``result``, which comes back as JSON."""
    program = (
        "import json, django\n"
        "import os\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'carevault.web.settings')\n"
        "django.setup()\n"
        "result = None\n" + code + "\nprint('RESULT=' + json.dumps(result))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT="))
    return json.loads(line.removeprefix("RESULT="))


OPERATOR = """
import json, os, sys
import django
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'carevault.web.settings')
django.setup()
for line in sys.stdin:
    scope = {'result': None}
    exec(json.loads(line), scope)
    print(json.dumps(scope['result']), flush=True)
"""


class Operator:
    """One long-lived process on the servers' data, standing in for an operator's commands
    (one Django start-up instead of one per command)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", OPERATOR],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, code: str) -> Any:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(code) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the operator process died"
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass
class Servers:
    ports: tuple[int, int]
    operator: Operator
    patient: str

    def run(self, code: str) -> Any:
        return self.operator.run(code)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data directory with the demo clinic and sealed diagnosis models (once per module)."""
    data_dir = tmp_path_factory.mktemp("multiprocess")
    env = base_env(data_dir)
    seeded = subprocess.run(
        [EXE, "demo", "--seed-only", "--password", PASSWORD],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    patient = django_run(
        env,
        "from carevault.modelguard import dataset, diagnosis_training\n"
        "from carevault.modelstore.datadir import model_store\n"
        "from django.conf import settings\n"
        "diagnosis_training.train(model_store(settings.DATA_DIR), seed=dataset.DEFAULT_SEED)\n"
        "from carevault.web.clinic.models import Patient\n"
        "result = str(Patient.objects.get(user__username='patient1').pk)\n",
    )
    return data_dir, patient


@pytest.fixture(scope="module", params=["database", "redis"])
def servers(request: pytest.FixtureRequest, prepared: tuple[Path, str]) -> Iterator[Servers]:
    data_dir, patient = prepared
    env = base_env(data_dir)
    prefix = f"cvtest-{uuid.uuid4().hex[:12]}"
    env["CAREVAULT_CACHE_PREFIX"] = prefix
    if request.param == "redis":
        env["REDIS_URL"] = REDIS_URL
    ports = (free_port(), free_port())
    started: list[subprocess.Popen[bytes]] = []
    logs = [data_dir / f"server-{request.param}-{n}.log" for n in (0, 1)]
    for port, log in zip(ports, logs, strict=True):
        with open(log, "wb") as out:
            started.append(
                subprocess.Popen(
                    [EXE, "serve", "--port", str(port), "--workers", "2"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        for port, log in zip(ports, logs, strict=True):
            deadline = time.monotonic() + 90
            while Client().get(port, "/healthz")[0] != 200:
                if time.monotonic() > deadline:
                    pytest.fail(f"the server did not start: {log.read_text()[-3000:]}")
                time.sleep(0.2)  # polling for start-up, bounded by the deadline
        operator = Operator(env)
        try:
            yield Servers(ports, operator, patient)
        finally:
            operator.close()
    finally:
        for server in started:
            os.killpg(server.pid, signal.SIGTERM)
        for server in started:
            server.wait(timeout=30)
        if request.param == "redis":
            import redis

            connection = redis.Redis.from_url(REDIS_URL)
            keys = list(connection.scan_iter(match=f"{prefix}*"))
            if keys:
                connection.delete(*keys)
            connection.close()


class Client:
    """A browser's cookie jar: one client that talks to either server (same address, same
    User-Agent, so a session started on one is the same session on the other)."""

    def __init__(self) -> None:
        self.jar = CookieJar()
        self.opener = build_opener(HTTPCookieProcessor(self.jar))

    def send(
        self, port: int, method: str, path: str, body: Any = None
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"User-Agent": USER_AGENT, "X-CSRFToken": self.cookie("csrftoken")}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = Request(f"http://127.0.0.1:{port}{path}", data, headers, method=method)
        try:
            with self.opener.open(request, timeout=60) as reply:
                status, head, raw = reply.status, dict(reply.headers), reply.read()
        except HTTPError as exc:
            status, head, raw = exc.code, dict(exc.headers), exc.read()
        except OSError:
            return 0, {}, None
        try:
            return status, head, json.loads(raw)
        except ValueError:
            return status, head, raw

    def get(self, port: int, path: str) -> tuple[int, dict[str, str], Any]:
        return self.send(port, "GET", path)

    def cookie(self, name: str) -> str:
        return next((c.value or "" for c in self.jar if c.name == name), "")

    def packet(self, port: int, username: str, password: str) -> dict[str, str]:
        if not self.cookie("csrftoken"):
            self.get(port, "/accounts/login/")
        status, _, challenge = self.get(port, "/accounts/login/challenge/")
        assert status == 200, challenge
        return packets.seal_login_packet(challenge, username, password, challenge["issued"])

    def post_packet(self, port: int, packet: dict[str, str]) -> int:
        return self.send(port, "POST", "/accounts/login/packet/", packet)[0]

    def log_in(self, port: int, username: str, password: str) -> int:
        return self.post_packet(port, self.packet(port, username, password))


def account(servers: Servers, username: str) -> dict[str, Any]:
    return servers.run(
        "from carevault.web.accounts.models import User\n"
        f"u = User.objects.get(username={username!r})\n"
        "result = {'failures': u.consecutive_failures, 'suspended': u.suspended_at is not None}\n"
    )


def lift(servers: Servers, username: str) -> None:
    servers.run(
        "from carevault.web.login import throttle\n"
        "from carevault.web.accounts.models import User\n"
        f"throttle.lift_suspension(User.objects.get(username={username!r}), actor=None,"
        " reason='test')\n"
    )


def test_an_account_is_suspended_after_exactly_the_configured_failures(servers: Servers) -> None:
    a, b = servers.ports
    client = Client()
    for n in range(SUSPEND_AFTER - 1):
        assert client.log_in((a, b)[n % 2], "labtech1", "wrong-password-1") == 400
    assert account(servers, "labtech1") == {"failures": SUSPEND_AFTER - 1, "suspended": False}
    assert client.log_in(b if SUSPEND_AFTER % 2 == 0 else a, "labtech1", "wrong-password-1") == 400
    assert account(servers, "labtech1") == {"failures": SUSPEND_AFTER, "suspended": True}
    # Suspended on both servers: the right password does not get in through either (429: sign-in
    # is paused, in the same words for every name).
    assert client.log_in(a, "labtech1", PASSWORD) == 429
    assert client.log_in(b, "labtech1", PASSWORD) == 429
    lift(servers, "labtech1")
    assert client.log_in(b, "labtech1", PASSWORD) == 200


def test_the_api_diagnosis_budget_allows_exactly_its_queries_across_servers(
    servers: Servers,
) -> None:
    a, b = servers.ports
    client = Client()
    assert client.log_in(a, "doctor1", PASSWORD) == 200
    path = f"/api/v1/patients/{servers.patient}/diagnoses"
    cases = dataset.load_split().X_test
    answers = [
        client.send((a, b)[n % 2], "POST", path, {"features": [float(v) for v in cases[n]]})
        for n in range(API_BUDGET_PER_HOUR + 1)
    ]
    statuses = [status for status, _, _ in answers]
    assert statuses == [201] * API_BUDGET_PER_HOUR + [429], answers[-1][2]
    assert int(answers[-1][1]["Retry-After"]) > 0


def test_an_address_block_and_its_lifting_reach_every_process_at_once(servers: Servers) -> None:
    a, b = servers.ports
    servers.run(
        "from carevault.web.login import throttle\n"
        "result = throttle.block_address('127.0.0.1', 'test', seconds=900)\n"
    )
    try:
        client = Client()
        assert [client.log_in(port, "doctor2", PASSWORD) for port in (a, b, a, b)] == [429] * 4
    finally:
        lifted = servers.run(
            "from carevault.web.login import throttle\n"
            "result = throttle.unblock_address('127.0.0.1', actor=None)\n"
        )
    assert lifted is True
    assert [Client().log_in(port, "doctor2", PASSWORD) for port in (a, b, a, b)] == [200] * 4


def test_a_challenge_consumed_on_one_server_cannot_be_used_on_the_other(servers: Servers) -> None:
    a, b = servers.ports
    client = Client()
    replayer = Client()
    replayer.get(b, "/accounts/login/")  # a CSRF cookie of its own, as a real replayer has
    captured = client.packet(a, "doctor2", PASSWORD)
    assert client.post_packet(a, captured) == 200
    assert replayer.post_packet(b, captured) == 400
    # And the other way round, so neither server is special.
    captured = client.packet(b, "doctor2", PASSWORD)
    assert client.post_packet(b, captured) == 200
    assert replayer.post_packet(a, captured) == 400
    assert replayer.log_in(a, "doctor2", PASSWORD) == 200  # the replayer's own packets work


def test_one_packet_sent_to_every_worker_at_once_logs_in_once(servers: Servers) -> None:
    a, b = servers.ports
    senders = [Client() for _ in range(4)]
    for sender in senders:
        sender.get(a, "/accounts/login/")
    captured = senders[0].packet(a, "doctor2", PASSWORD)
    start = threading.Barrier(len(senders))
    statuses: list[int] = []

    def send(sender: Client, port: int) -> None:
        start.wait()
        statuses.append(sender.post_packet(port, captured))

    threads = [
        threading.Thread(target=send, args=(sender, (a, b)[n % 2]))
        for n, sender in enumerate(senders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 400, 400, 400]
