"""Shared by the throttle tests: a clock the tests move by hand, a login request from a chosen
client address (and forwarding header), and the real Redis the issue asks the throttle to be
tested against."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from carevault.web.accounts.models import User
from carevault.web.login import flow
from carevault.web.login.flow import LoginResult

# CI has Redis here; the tests use their own key prefix and delete only their own keys, so the
# database number may be shared with anything else.
REDIS_URL = os.environ.get("CAREVAULT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ATTACKER = "198.51.100.7"
FAST_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
]


class FakeClock:
    """The throttle's clock, moved by hand: back-off deadlines, windows and blocks are judged by
    it. It starts on a window boundary of every window size the tests use."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) // 86400 * 86400)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def login_request(address: str = ATTACKER, forwarded: str | None = None) -> HttpRequest:
    """A POST to the login page from ``address`` (the TCP peer), with a session."""
    extra: dict[str, Any] = {"REMOTE_ADDR": address}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    request = RequestFactory().post("/accounts/login/", **extra)
    SessionMiddleware(lambda _: HttpResponse()).process_request(request)
    request.user = AnonymousUser()
    return request


def attempt(
    username: str, password: str, address: str = ATTACKER, forwarded: str | None = None
) -> LoginResult:
    """One password login through the flow every login takes."""
    return flow.attempt_password_login(login_request(address, forwarded), username, password)


def use_fast_hashes(settings: Any, password: str) -> None:
    """Argon2 costs about 0.1 s a guess, and these tests guess hundreds of times; which hasher
    said no does not matter to the throttle. The change is rolled back with the test."""
    settings.PASSWORD_HASHERS = FAST_HASHERS
    User.objects.update(password=make_password(password, hasher="md5"))


def require_redis(url: str = REDIS_URL) -> Any:
    """A client of the real Redis, or a failed test saying why: never a skip."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        client.close()
        pytest.fail(
            f"Redis is not reachable at {url} ({exc}). The login throttle must be tested against "
            "a real Redis shared by several processes: start redis-server, or point "
            "CAREVAULT_TEST_REDIS_URL at one.",
            pytrace=False,
        )
    return client


def unique_prefix() -> str:
    return f"cvtest-{uuid.uuid4().hex[:16]}"


def delete_prefix(client: Any, prefix: str) -> None:
    """Remove this run's keys only (Django stores them as "<prefix>:<version>:<key>")."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@contextmanager
def redis_cache(settings: Any) -> Iterator[str]:
    """Point the Django cache at the real Redis, under a prefix of its own, for one test."""
    client = require_redis()
    prefix = unique_prefix()
    settings.CACHES = {
        "default": {
            "BACKEND": "carevault.web.sharedstate.redis.SharedRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    # The throttle reaches the cache through the proxy; make sure it now means Redis.
    assert isinstance(caches["default"], RedisCache)
    try:
        yield prefix
    finally:
        delete_prefix(client, prefix)
        client.close()
