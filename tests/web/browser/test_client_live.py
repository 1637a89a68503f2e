"""The Python client (carevault.client) against a live server: it logs in with an encrypted
login packet, reads the API, and a packet it captured and sends again is refused.

A live server makes these tests transactional (the database is flushed after each); the
``cast`` fixture re-seeds the demo cast, as for the browser tests (see conftest.py)."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from carevault.client import CareVaultClient, LoginFailed
from carevault.web.audit.models import AuditEntry
from carevault.web.login import throttle

pytestmark = pytest.mark.usefixtures("_restore_cast", "cast")


def test_the_python_client_logs_in_and_reads_who_it_is(live_server, cast_password):
    client = CareVaultClient(live_server.url)
    assert client.get("/api/v1/me").status == 401
    assert client.login("doctor1", cast_password) == "/"
    assert client.get_json("/api/v1/me") == {"username": "doctor1", "role": "doctor"}
    assert client.logout().status in (200, 302)
    assert client.get("/api/v1/me").status == 401


def test_a_captured_packet_sent_again_is_refused(live_server, cast_password):
    victim = CareVaultClient(live_server.url)
    victim.get("/accounts/login/")
    captured = victim.seal("patient1", cast_password)
    assert victim.send_packet(captured).status == 200

    attacker = CareVaultClient(live_server.url)
    attacker.get("/accounts/login/")
    replay = attacker.send_packet(captured)
    assert replay.status == 400
    assert replay.json() == {"ok": False, "error": "Login failed."}
    assert attacker.get("/api/v1/me").status == 401
    rejected = AuditEntry.objects.filter(action="auth.packet_rejected").get()
    assert rejected.details == {"reason": "replay"}


def test_a_wrong_password_raises_login_failed(live_server):
    client = CareVaultClient(live_server.url)
    with pytest.raises(LoginFailed):
        client.login("doctor1", "Not-The-Password-1")
    assert client.get("/api/v1/me").status == 401


def test_a_paused_sign_in_raises_login_failed_with_the_servers_words_and_the_wait(
    live_server, cast_password
):
    # The live server runs in this process: its cache is this one.
    throttle.block_address("127.0.0.1", "a test block", seconds=300)
    try:
        client = CareVaultClient(live_server.url)
        with pytest.raises(LoginFailed) as refused:
            client.login("doctor1", cast_password)
    finally:
        throttle.unblock_address("127.0.0.1", actor=None)
        cache.clear()
    assert str(refused.value) == (
        "Sign-in is paused for this account name or this computer; try again in 5 minutes."
    )
    assert refused.value.retry_after == 300
