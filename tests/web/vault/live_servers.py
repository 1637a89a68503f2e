"""What the live-server tests of the vault need: a data directory's environment, a command run
on it, a free port, and a browser's cookie jar that signs in with an encrypted login packet
(the same as tests/web/test_multiprocess_security.py, which is not importable from here)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import HTTPCookieProcessor, Request, build_opener

import carevault
from carevault.crypto import packets

EXE = Path(sys.executable).parent / "carevault"
SRC = Path(carevault.__file__).resolve().parents[1]
PASSWORD = "Correct-Horse-Battery-9"
USER_AGENT = "carevault-live-rotation-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir), "PYTHONPATH": str(SRC)}
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "CAREVAULT_HTTPS", "REDIS_URL"):
        env.pop(name, None)
    return env


def django_run(env: dict[str, str], code: str) -> Any:
    """Run ``code`` in a process of its own on the servers' data; it sets ``result``."""
    program = (
        "import json, os, django\n"
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


class Client:
    """One cookie jar that talks to either server."""

    def __init__(self) -> None:
        self.jar = CookieJar()
        self.opener = build_opener(HTTPCookieProcessor(self.jar))

    def send(self, port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"User-Agent": USER_AGENT, "X-CSRFToken": self.cookie("csrftoken")}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = Request(f"http://127.0.0.1:{port}{path}", data, headers, method=method)
        try:
            with self.opener.open(request, timeout=60) as reply:
                status, raw = reply.status, reply.read()
        except HTTPError as exc:
            status, raw = exc.code, exc.read()
        except OSError:
            return 0, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def get(self, port: int, path: str) -> tuple[int, Any]:
        return self.send(port, "GET", path)

    def cookie(self, name: str) -> str:
        return next((c.value or "" for c in self.jar if c.name == name), "")

    def log_in(self, port: int, username: str, password: str) -> int:
        if not self.cookie("csrftoken"):
            self.get(port, "/accounts/login/")
        status, challenge = self.get(port, "/accounts/login/challenge/")
        assert status == 200, challenge
        packet = packets.seal_login_packet(challenge, username, password, challenge["issued"])
        return self.send(port, "POST", "/accounts/login/packet/", packet)[0]
