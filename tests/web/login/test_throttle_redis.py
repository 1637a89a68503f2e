"""The same throttling shared across two processes through Redis: two app servers (separate
Python processes, each with its own Django) count failures in one place, so an attacker who
spreads guesses over servers gains nothing.

Redis is required, never skipped: CI has it (127.0.0.1:6379), and a throttle tested only in
one process's memory proves nothing about several servers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from throttle_helpers import REDIS_URL, delete_prefix, require_redis, unique_prefix

pytestmark = pytest.mark.django_db

# One app server: reads a JSON command per line, answers a JSON line. It goes through the same
# throttle functions the login flow calls.
WORKER = """
import json, sys
import django
django.setup()
from carevault.web.login import throttle

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    command = json.loads(line)
    op, username, address = command["op"], command.get("username", ""), command.get("address", "")
    if op == "fail":
        for _ in range(command.get("times", 1)):
            throttle.record_failure(username, address)
        answer = {"done": True}
    elif op == "check":
        decision = throttle.check(username, address)
        answer = {"blocked": decision.blocked, "retry_after": decision.retry_after,
                  "reason": decision.reason}
    elif op == "counts":
        answer = {"counts": list(throttle.address_counts(address)),
                  "blocked": [block.address for block in throttle.blocked_addresses()]}
    else:
        answer = {"error": op}
    print(json.dumps(answer), flush=True)
"""

TIMEOUT = 60


class Server:
    """One worker process; ``send`` and ``receive`` are split so two can work at once."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.receive() == {"ready": True}

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=TIMEOUT)
            assert self.process.stderr is not None
            pytest.fail(f"app server {self.name} died:\n{self.process.stderr.read()}")
        return dict(json.loads(line))

    def ask(self, **command: Any) -> dict[str, Any]:
        self.send(**command)
        return self.receive()

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two app servers sharing one database (a throwaway data directory) and one Redis, under a
    key prefix of their own that is deleted afterwards."""
    client = require_redis()
    prefix = unique_prefix()
    env = {
        # Never the database of the run that started them (make unit-pg points DATABASE_URL at
        # a real PostgreSQL database): the servers share a throwaway SQLite database. And the
        # default thresholds, whatever the developer's shell says.
        **{
            name: value
            for name, value in os.environ.items()
            if name != "DATABASE_URL" and not name.startswith("CAREVAULT_LOGIN_")
        },
        "DJANGO_SETTINGS_MODULE": "carevault.web.settings",
        "CAREVAULT_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": REDIS_URL,
        "CAREVAULT_CACHE_PREFIX": prefix,
    }
    migrate = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr
    started: list[Server] = []
    try:
        started.append(Server("A", env))
        started.append(Server("B", env))
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()
        delete_prefix(client, prefix)
        client.close()


USER, ADDRESS = "target-account", "198.51.100.23"


def test_failures_recorded_by_two_servers_add_up_to_one_back_off(servers):
    a, b = servers
    a.ask(op="fail", username=USER, address=ADDRESS, times=3)
    assert a.ask(op="check", username=USER, address=ADDRESS)["blocked"] is False
    b.ask(op="fail", username=USER, address=ADDRESS, times=3)
    # Six failures in all (three per server): past the five free ones, on both servers.
    for server in (a, b):
        decision = server.ask(op="check", username=USER, address=ADDRESS)
        assert decision["blocked"] is True, server.name
        assert decision["reason"] == "account-backoff"
        assert decision["retry_after"] >= 1
    assert a.ask(op="counts", address=ADDRESS)["counts"] == [6, 1]


def test_an_address_blocked_by_one_server_is_blocked_on_the_other(servers):
    a, b = servers
    # Password spraying split between the servers: fifty names through each (the default limit
    # is a hundred names: a ward never fails against that many).
    for n in range(50):
        a.ask(op="fail", username=f"sprayed-a{n}", address=ADDRESS)
        b.ask(op="fail", username=f"sprayed-b{n}", address=ADDRESS)
    for server in (a, b):
        decision = server.ask(op="check", username="anyone-at-all", address=ADDRESS)
        assert (decision["blocked"], decision["reason"]) == (True, "address-blocked"), server.name
        assert server.ask(op="counts", address=ADDRESS)["blocked"] == [ADDRESS]


def test_concurrent_failures_on_two_servers_are_all_counted(servers):
    a, b = servers
    # Both servers hammer the same counters at the same time; add + incr must lose none.
    for server in (a, b):
        server.send(op="fail", username=USER, address=ADDRESS, times=60)
    assert a.receive() == b.receive() == {"done": True}
    assert a.ask(op="counts", address=ADDRESS)["counts"] == [120, 1]
    assert b.ask(op="counts", address=ADDRESS)["counts"] == [120, 1]
