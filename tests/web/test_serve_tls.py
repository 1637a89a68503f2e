"""`carevault serve --tls`: HTTPS with a locally generated certificate, secure cookies, HSTS."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "carevault"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("tls")
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir)}
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "CAREVAULT_HTTPS"):
        env.pop(name, None)
    port = free_port()
    log = data_dir / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [EXE, "serve", "--tls", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    context = ssl.create_default_context(cafile=None)
    deadline = time.monotonic() + 60
    cert = data_dir / "tls" / "cert.pem"
    while time.monotonic() < deadline:
        if cert.exists():
            context = ssl.create_default_context(cafile=str(cert))
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context):
                    break
            except OSError:
                pass
        time.sleep(0.2)
    else:
        os.killpg(server.pid, signal.SIGTERM)
        pytest.fail(f"the TLS server did not start: {log.read_text()[-2000:]}")
    yield port, context, data_dir
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=20)


def test_it_serves_https_with_a_certificate_for_localhost(tls_server):
    port, context, _ = tls_server
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context) as reply:
        assert reply.status == 200


def test_cookies_are_secure_and_hsts_is_sent_over_tls(tls_server):
    port, context, _ = tls_server
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/accounts/login/", context=context) as r:
        cookies = r.headers.get_all("Set-Cookie")
        assert cookies, "the login page sets the CSRF cookie"
        assert all("Secure" in c for c in cookies)
        assert "max-age=31536000" in r.headers["Strict-Transport-Security"]


def test_the_private_key_is_readable_by_its_owner_only(tls_server):
    _, _, data_dir = tls_server
    assert (data_dir / "tls" / "key.pem").stat().st_mode & 0o077 == 0


def test_plain_http_gets_no_answer_on_the_tls_port(tls_server):
    port, _, _ = tls_server
    with pytest.raises(http.client.HTTPException):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
