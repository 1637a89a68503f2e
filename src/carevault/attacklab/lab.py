"""The disposable lab: a CareVault with demo data on a free loopback port, served by two
workers as deployed, in a data directory of its own that is deleted afterwards.

Everything goes through the ``carevault`` command line in child processes (never the server's
modules in this process): ``demo --prepare`` seeds the demo and trains its models, ``serve``
serves, and the officer's commands (``security activity|status|unblock|lift``, ``audit
verify``, ``keys ...``) read and restore the lab's state between scenarios. The fault
scenarios kill the server (SIGKILL, the whole process group) and start it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import carevault

SRC = Path(carevault.__file__).resolve().parents[1]
DEMO_USERS = ("admin", "doctor1", "doctor2", "labtech1", "patient1", "patient2", "patient3")


class LabError(Exception):
    """The lab could not be set up or the server would not start (one line for the user)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Files:
    """The data directory of a CareVault an attacker (or the officer) holds: the database file,
    the uploads and keys, and the command line run on it."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env

    @property
    def database(self) -> Path:
        return self.data_dir / "carevault.sqlite3"

    def cli(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 300,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``carevault ARGS`` on this data directory."""
        done = subprocess.run(  # noqa: S603 - fixed program, arguments from the lab
            [sys.executable, "-m", "carevault.cli", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise LabError(f"carevault {' '.join(args)} failed: {tail[0]}")
        return done

    def cli_json(self, *args: str, timeout: float = 300) -> Any:
        return json.loads(self.cli(*args, "--json", timeout=timeout).stdout)

    def copy(self, into: Path) -> Files:
        """A copy of the data directory (what an attacker walks away with), same environment
        but pointed at the copy."""
        shutil.copytree(self.data_dir, into, symlinks=True)
        return Files(into, {**self.env, "CAREVAULT_DATA_DIR": str(into)})


class LabServer:
    """Start, kill and restart the lab's server; ``url`` while it runs."""

    def __init__(
        self, data_dir: Path | None = None, *, workers: int = 2, log: Path | None = None
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="carevault-lab-"))
        self.workers = workers
        self.password = "Lab-" + secrets.token_urlsafe(12)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self.log = log or (self.data_dir / "lab-server.log")
        env = {**os.environ, "CAREVAULT_DATA_DIR": str(self.data_dir)}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(SRC), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
        )
        # The lab is a clinic on one machine behind one proxy hop (the lab's client plays it).
        for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "CAREVAULT_HTTPS"):
            env.pop(name, None)
        env["CAREVAULT_TRUSTED_PROXIES"] = "1"
        env.setdefault("CAREVAULT_ENV", "development")
        self.files = Files(self.data_dir, env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def passwords(self) -> dict[str, str]:
        return {user: self.password for user in DEMO_USERS}

    def prepare(self) -> None:
        """Seed the demo (every demo user gets the lab's password) and train its models."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.files.cli("demo", "--prepare", "--password", self.password, timeout=900)

    def start(self, *, timeout: float = 120) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self.port = self.port or free_port()
        handle = open(self.log, "ab")  # noqa: SIM115 - the child keeps it for its life
        self._process = subprocess.Popen(  # noqa: S603 - fixed program
            [
                sys.executable,
                "-m",
                "carevault.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=self.files.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LabError(f"the lab server exited at start-up; see {self.log}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=5) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise LabError(f"the lab server did not answer /healthz within {timeout:.0f} s")

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server and its workers at once (no clean shutdown)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        self._process = None

    def close(self, *, keep: bool = False) -> None:
        self.stop()
        if self._own_dir and not keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)
