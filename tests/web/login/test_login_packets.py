"""Logging in with encrypted login packets (login/views.py, crypto/packets.py).

The credentials arrive only inside a packet sealed to the server's login key for a single-use
challenge. A replayed, reused, tampered, expired, foreign or malformed packet is refused with the
one generic answer every failed login gets, and audited with its reason.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.cache import caches
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from carevault.crypto import packets
from carevault.crypto.packets import CHALLENGE_TTL, b64url, seal_login_packet, seal_payload
from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.login import challenges, throttle
from carevault.web.vault import service
from carevault.web.vault.models import ServiceSecret

pytestmark = pytest.mark.django_db

CHALLENGE = reverse("accounts:login_challenge")
PACKET = reverse("accounts:login_packet")
LOGIN = reverse("accounts:login")
ME = reverse("api:me")
FAILED = {"ok": False, "error": "Login failed."}


@pytest.fixture(autouse=True)
def _fresh_caches() -> Any:
    """Login counters and challenges of earlier tests must not decide this one."""
    caches["default"].clear()
    caches[challenges.CACHE_ALIAS].clear()
    yield
    caches["default"].clear()


def challenge_for(client: Client) -> dict[str, Any]:
    response = client.get(CHALLENGE)
    assert response.status_code == 200
    return response.json()


def seal(challenge: dict[str, Any], username: str, password: str) -> dict[str, str]:
    return seal_login_packet(challenge, username, password, challenge["issued"])


def post(client: Client, packet: Any, query: str = "") -> Any:
    body = packet if isinstance(packet, bytes | str) else json.dumps(packet)
    return client.post(PACKET + query, body, content_type="application/json")


def logged_in_as(client: Client) -> str | None:
    response = client.get(ME)
    return response.json()["username"] if response.status_code == 200 else None


def rejections() -> list[str]:
    return [
        entry.details["reason"]
        for entry in AuditEntry.objects.filter(action="auth.packet_rejected").order_by("seq")
    ]


def assert_refused(response: Any) -> None:
    assert response.status_code == 400
    assert response.json() == FAILED
    assert "Retry-After" not in response


def flip(text: str, index: int) -> str:
    raw = bytearray(packets._unb64url(text, max_size=8192) or b"")
    raw[index] ^= 0x01
    return b64url(bytes(raw))


# -- the login ------------------------------------------------------------------------------------


def test_a_user_logs_in_through_the_packet_flow(client, cast_password):
    assert client.get(LOGIN).status_code == 200
    packet = seal(challenge_for(client), "doctor1", cast_password)
    response = post(client, packet)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "next": reverse("home")}
    assert response["Cache-Control"] == "no-store"
    assert logged_in_as(client) == "doctor1"
    login = AuditEntry.objects.filter(action="auth.login").order_by("-seq").first()
    assert login.actor == "doctor1"
    assert rejections() == []


def test_the_login_leads_back_to_the_page_that_asked_for_it(client, cast_password):
    wanted = reverse("clinic:doctor_home")
    response = post(
        client, seal(challenge_for(client), "doctor1", cast_password), f"?next={wanted}"
    )
    assert response.json() == {"ok": True, "next": wanted}


@pytest.mark.parametrize("elsewhere", ["https://evil.example/", "//evil.example/x", "javascript:x"])
def test_the_login_never_leads_to_another_site(client, cast_password, elsewhere):
    query = "?" + urlencode({"next": elsewhere})
    response = post(client, seal(challenge_for(client), "doctor1", cast_password), query)
    assert response.json() == {"ok": True, "next": reverse("home")}


def test_a_user_with_a_second_factor_is_sent_to_the_code_page_not_logged_in(
    client, cast_password, users
):
    users["doctor1"].totp_confirmed_at = timezone.now()
    users["doctor1"].save(update_fields=["totp_confirmed_at"])
    wanted = reverse("clinic:doctor_home")
    packet = seal(challenge_for(client), "doctor1", cast_password)
    response = post(client, packet, f"?next={wanted}")
    verify = reverse("account_security:verify")
    assert response.json() == {"ok": True, "next": f"{verify}?{urlencode({'next': wanted})}"}
    assert logged_in_as(client) is None


def test_the_packet_carries_neither_the_username_nor_the_password(client, cast_password):
    body = json.dumps(seal(challenge_for(client), "doctor1", cast_password))
    assert "doctor1" not in body
    assert cast_password not in body


def test_a_challenge_is_fresh_each_time_and_never_cached(client):
    first = client.get(CHALLENGE)
    second = challenge_for(client)
    assert first["Cache-Control"] == "no-store"
    assert first.json()["cid"] != second["cid"]
    assert first.json()["nonce"] != second["nonce"]
    assert first.json()["alg"] == "ECDH-P256/HKDF-SHA256/AES-256-GCM"
    assert first.json()["key_id"] == service.login_key().key_id


def test_the_packet_endpoint_needs_the_csrf_token(cast_password):
    client = Client(enforce_csrf_checks=True)
    client.get(LOGIN)
    packet = seal(challenge_for(client), "doctor1", cast_password)
    assert post(client, packet).status_code == 403
    assert logged_in_as(client) is None
    token = client.cookies["csrftoken"].value
    packet = seal(challenge_for(client), "doctor1", cast_password)
    response = client.post(
        PACKET, json.dumps(packet), content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 200
    assert logged_in_as(client) == "doctor1"


# -- the old way is closed ------------------------------------------------------------------------


def test_a_plain_form_post_of_credentials_is_refused_and_logs_nobody_in(client, cast_password):
    response = client.post(LOGIN, {"username": "doctor1", "password": cast_password})
    assert response.status_code == 405
    assert "_auth_user_id" not in client.session
    assert logged_in_as(client) is None
    assert not AuditEntry.objects.filter(action="auth.login").exists()


def test_the_login_page_asks_for_javascript_and_its_fields_carry_no_names(client):
    html = client.get(LOGIN).content.decode()
    assert "<noscript>" in html
    assert "JavaScript is required to log in securely" in html
    assert 'src="/static/js/login.js"' in html
    assert 'id="id_username"' in html
    assert 'id="id_password"' in html
    assert 'name="username"' not in html
    assert 'name="password"' not in html
    assert "<fieldset disabled>" in html  # login.js enables it once it can encrypt
    assert "<script>" not in html  # no inline script (CSP)


# -- refused packets ------------------------------------------------------------------------------


def test_a_replayed_packet_fails_and_is_audited_as_replay(client, cast_password):
    captured = seal(challenge_for(client), "doctor1", cast_password)
    assert post(client, captured).status_code == 200
    attacker = Client()
    assert_refused(post(attacker, captured))
    assert logged_in_as(attacker) is None
    assert rejections() == ["replay"]
    entry = AuditEntry.objects.filter(action="auth.packet_rejected").get()
    assert entry.outcome == "failed"


def test_a_second_packet_for_a_used_challenge_fails(client, cast_password):
    challenge = challenge_for(client)
    assert post(client, seal(challenge, "doctor1", cast_password)).status_code == 200
    other = Client()
    assert_refused(post(other, seal(challenge, "doctor1", cast_password)))
    assert logged_in_as(other) is None
    assert rejections() == ["replay"]


def test_a_challenge_is_spent_by_a_failed_packet_too(client, cast_password):
    """A tampered packet uses up its challenge: the genuine packet cannot follow it."""
    genuine = seal(challenge_for(client), "doctor1", cast_password)
    assert_refused(post(client, genuine | {"ct": flip(genuine["ct"], 0)}))
    assert_refused(post(client, genuine))
    assert logged_in_as(client) is None
    assert rejections() == ["tampered", "replay"]


@pytest.mark.parametrize("field", ["ct", "iv", "epk"])
def test_a_tampered_packet_fails(client, cast_password, field):
    packet = seal(challenge_for(client), "doctor1", cast_password)
    index = {"ct": -1, "iv": 0, "epk": 64}[field]
    assert_refused(post(client, packet | {field: flip(packet[field], index)}))
    assert logged_in_as(client) is None
    assert rejections() == ["tampered"]


def test_a_packet_with_another_ephemeral_key_fails(client, cast_password):
    packet = seal(challenge_for(client), "doctor1", cast_password)
    other = packets.LoginKey.generate().public_bytes()
    assert_refused(post(client, packet | {"epk": b64url(other)}))
    assert rejections() == ["tampered"]


def test_a_packet_moved_to_another_challenge_fails(client, cast_password):
    packet = seal(challenge_for(client), "doctor1", cast_password)
    other = challenge_for(client)
    assert_refused(post(client, packet | {"cid": other["cid"]}))
    assert logged_in_as(client) is None
    assert rejections() == ["tampered"]


def test_a_packet_for_an_expired_challenge_fails(client, cast_password, monkeypatch):
    challenge = challenge_for(client)
    packet = seal(challenge, "doctor1", cast_password)
    later = challenge["expires"] + 1
    monkeypatch.setattr(challenges, "now", lambda: float(later))
    assert_refused(post(client, packet))
    assert logged_in_as(client) is None
    assert rejections() == ["expired"]


def test_a_packet_stamped_long_ago_fails(client, cast_password):
    challenge = challenge_for(client)
    packet = seal_login_packet(challenge, "doctor1", cast_password, challenge["issued"] - 600)
    assert_refused(post(client, packet))
    assert rejections() == ["expired"]


def test_a_packet_with_a_foreign_nonce_fails(client, cast_password):
    """Sealed for challenge A (A's cid and nonce in the key) but carrying challenge B's nonce."""
    first, second = challenge_for(client), challenge_for(client)
    payload = {
        "username": "doctor1",
        "password": cast_password,
        "nonce": second["nonce"],
        "ts": first["issued"],
    }
    assert_refused(post(client, seal_payload(first, payload)))
    assert logged_in_as(client) is None
    assert rejections() == ["foreign_nonce"]


def test_a_packet_for_a_challenge_never_issued_fails(client, cast_password):
    key = service.login_key()
    forged = packets.make_challenge(key, now=challenges.now())
    assert_refused(post(client, seal(forged.to_dict(), "doctor1", cast_password)))
    assert rejections() == ["unknown_challenge"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"username=doctor1&password=x",
        b"[]",
        b'{"cid": "x", "epk": "y", "iv": "z", "ct": "w"}',
        b"{" + b'"a": 1,' * 2000 + b'"b": 2}',
    ],
)
def test_a_malformed_packet_fails(client, body):
    assert_refused(post(client, body))
    assert rejections() == ["malformed"]


def test_every_failure_gives_the_same_answer(client, cast_password, users, monkeypatch):
    def fresh(username: str = "doctor1", password: str = cast_password) -> dict[str, str]:
        return seal(challenge_for(client), username, password)

    used = fresh()
    assert post(Client(), used).status_code == 200
    failures = {
        "malformed": post(client, b"{}"),
        "replay": post(client, used),
        "tampered": post(client, fresh() | {"ct": flip(fresh()["ct"], 3)}),
        "wrong password": post(client, fresh(password="Wrong-Password-123")),
        "unknown user": post(client, fresh(username="nobody-here")),
    }
    expiring = fresh()
    monkeypatch.setattr(challenges, "now", lambda: float(10**10))
    failures["expired"] = post(client, expiring)
    shapes = {
        cause: (r.status_code, r.content, r.get("Retry-After"), r.get("Content-Type"))
        for cause, r in failures.items()
    }
    assert len(set(shapes.values())) == 1, shapes
    assert next(iter(failures.values())).json() == FAILED
    assert logged_in_as(client) is None


def test_a_paused_sign_in_says_so_and_when_to_try_again_the_same_for_every_name(
    client, cast_password, users, settings
):
    """A suspended account, and a name no account has after as many failures, get one answer,
    right password or wrong (issue 12)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for n in range(settings.LOGIN_SUSPEND_AFTER):
        throttle.record_failure("doctor2", f"203.0.113.{n + 1}")
        throttle.record_failure("nobody-here", f"203.0.113.{n + 1}")
    assert User.objects.get(username="doctor2").is_suspended

    def answer(username: str, password: str) -> tuple[int, bytes, str | None]:
        response = post(client, seal(challenge_for(client), username, password))
        return response.status_code, response.content, response.get("Retry-After")

    answers = {
        answer("doctor2", cast_password),
        answer("doctor2", "Wrong-Password-123"),
        answer("nobody-here", cast_password),
        answer("nobody-here", "Wrong-Password-123"),
    }
    assert len(answers) == 1
    [(status, body, retry_after)] = answers
    assert status == 429
    wait = settings.LOGIN_BACKOFF_MAX_SECONDS
    assert json.loads(body) == {
        "ok": False,
        "error": "Sign-in is paused for this account name or this computer; try again in "
        f"{wait // 60} minutes.",
        "retry_after": wait,
    }
    assert retry_after == str(wait)
    assert logged_in_as(client) is None


# -- the challenge store and the key --------------------------------------------------------------


REDIS_URL = os.environ.get("CAREVAULT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(params=["database", "redis"])
def store(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    """The challenge store as one machine has it (a table in the database) and as several
    app servers share it (the real Redis, under a key prefix of this test's own)."""
    if request.param == "database":
        assert settings.CACHES[challenges.CACHE_ALIAS]["BACKEND"].endswith("SharedStateCache")
        yield "database"
        return
    import redis

    connection = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        connection.ping()
    except redis.exceptions.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}); start redis-server")
    prefix = f"cvtest-{uuid.uuid4().hex[:16]}"
    settings.CACHES = settings.CACHES | {
        challenges.CACHE_ALIAS: {
            "BACKEND": "carevault.web.sharedstate.redis.SharedRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    try:
        yield "redis"
    finally:
        keys = list(connection.scan_iter(match=f"{prefix}:*"))
        if keys:
            connection.delete(*keys)
        connection.close()


def test_a_replayed_packet_fails_with_either_store(client, cast_password, store):
    captured = seal(challenge_for(client), "doctor1", cast_password)
    assert post(client, captured).status_code == 200
    assert_refused(post(Client(), captured))
    assert rejections() == ["replay"]


# On Redis only: threads cannot see the test's uncommitted transaction, so the database store
# is raced by real processes instead (tests/web/test_multiprocess_security.py).
@pytest.mark.parametrize("store", ["redis"], indirect=True)
def test_a_challenge_is_consumed_once_even_by_concurrent_requests(client, store):
    cid = challenge_for(client)["cid"]
    won: list[str] = []
    refused: list[str] = []
    start = threading.Barrier(8)

    def take() -> None:
        start.wait()
        try:
            challenges.consume(cid)
            won.append(cid)
        except challenges.ChallengeRefused as exc:
            refused.append(exc.reason)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert len(refused) == 7
    assert set(refused) <= {"replay"}


def test_challenges_outlive_their_validity_only_briefly(client, monkeypatch):
    stored: dict[str, Any] = {}
    cache = caches[challenges.CACHE_ALIAS]
    real_set = cache.set

    def spy(key: str, value: Any, timeout: Any = None, **kwargs: Any) -> None:
        stored[key] = timeout
        real_set(key, value, timeout, **kwargs)

    monkeypatch.setattr(cache, "set", spy)
    challenge_for(client)
    assert list(stored.values()) == [CHALLENGE_TTL + challenges.GRACE_SECONDS]


def test_the_login_key_is_made_once_and_stored_wrapped():
    service.reset_caches()  # an earlier test's key may be cached here, its row rolled back
    key = service.login_key()
    row = ServiceSecret.objects.get(name="login-key")
    assert key.private_bytes().expose() not in bytes(row.wrapped)
    service.reset_caches()
    assert service.login_key().key_id == key.key_id
    assert ServiceSecret.objects.filter(name="login-key").count() == 1


def test_a_process_holding_an_old_login_key_picks_up_the_new_one(client, cast_password):
    """The key was replaced while this process ran (another process made the challenge)."""
    old = service.login_key()
    ServiceSecret.objects.filter(name="login-key").delete()
    service.reset_caches()
    new = service.login_key()
    assert new.key_id != old.key_id
    # This process still holds the old key; the challenge names the new one.
    challenge = challenge_for(client)
    service_module: Any = service
    service_module._login_key = old
    assert post(client, seal(challenge, "doctor1", cast_password)).status_code == 200
    assert service.login_key().key_id == new.key_id
