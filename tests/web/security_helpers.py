"""Shared by the security-layer tests: a throttle clock moved by hand, login attempts through
the flow every login takes (inside the security middleware, as a served request is), and a scorer
of fixed risk (the layer works with any RiskScorer)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from carevault.security.assessment import Assessment
from carevault.security.baseline import LoadedScorer
from carevault.security.events import Event
from carevault.web.accounts.models import User
from carevault.web.login import flow, throttle
from carevault.web.login.flow import LoginResult
from carevault.web.securitycore.middleware import SecurityMiddleware
from carevault.web.securitycore.runtime import reset_runtime, runtime

ATTACKER = "198.51.100.7"
WRONG = "Tr0ub4dor&3-but-wrong"


class FakeClock:
    """The throttle's clock (back-off deadlines, address windows); the security layer's own
    windows use real time, so every attempt in a test falls inside them."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) // 86400 * 86400)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fresh_security(settings: Any) -> Iterator[None]:
    """A fresh scorer, no host sampling and no batch scoring, so every event is scored where the
    test can see it. (The shared store is emptied by tests/web/conftest.py for tests that use a
    database: it is a table unless REDIS_URL is set.)"""
    settings.SECURITY_TELEMETRY_SECONDS = 0
    settings.SECURITY_SYNC_BUDGET_MS = 60_000
    reset_runtime()
    yield
    reset_runtime()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The throttle's clock, moved by hand."""
    fake = FakeClock()
    monkeypatch.setattr(throttle, "clock", fake)
    return fake


def use_fast_hashes(settings: Any, password: str) -> None:
    """Argon2 costs about 0.1 s a guess; which hasher said no does not matter here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    User.objects.update(password=make_password(password, hasher="md5"))


def login_request(address: str = ATTACKER) -> HttpRequest:
    request = RequestFactory().post("/accounts/login/", REMOTE_ADDR=address)
    SessionMiddleware(lambda _: HttpResponse()).process_request(request)
    request.user = AnonymousUser()
    return request


def attempt(
    clock: FakeClock, username: str, password: str, address: str = ATTACKER
) -> tuple[LoginResult, HttpRequest]:
    """A real password check: first wait out the account's back-off, as a patient guesser
    would (a refused attempt is no guess)."""
    clock.advance(throttle.check(username, address).retry_after)
    request = login_request(address)
    results: list[LoginResult] = []

    def view(served: HttpRequest) -> HttpResponse:
        results.append(flow.attempt_password_login(served, username, password))
        return HttpResponse()

    # The security layer acts on a live session through the middleware, once the view is done.
    SecurityMiddleware(view)(request)
    return results[0], request


class FixedScorer:
    """Any RiskScorer will do: this one rates every event of the given kinds at ``risk``."""

    def __init__(self, risk: float, kinds: tuple[str, ...] = ()) -> None:
        self.risk = risk
        self.kinds = kinds

    def assess(self, event: Event) -> Assessment:
        if self.kinds and event.kind.value not in self.kinds:
            return Assessment(risk=0.0, detectors={"fixed": 0.0})
        return Assessment(
            risk=self.risk,
            detectors={"fixed": self.risk, "other": self.risk / 2},
            features={"records_per_minute": 42.0},
        )


@contextmanager
def scoring_with(scorer: Any) -> Iterator[None]:
    rt = runtime()
    saved = rt.loaded
    rt.loaded = LoadedScorer(scorer, "trained", "fixed", "1", "", "a test scorer")
    try:
        yield
    finally:
        rt.loaded = saved
