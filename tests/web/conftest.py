"""The fixed cast (healthchecks style): the demo seed, created once per test session and rolled
back after every test, so each test starts from the same clinic.

Users: admin (security officer), doctor1 (patients 1 and 2), doctor2 (patient 3), labtech1,
patient1, patient2, patient3. All share ``PASSWORD``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from carevault.crypto import packets
from carevault.web import demo
from carevault.web.accounts.models import User
from carevault.web.clinic.models import Patient
from carevault.web.login import sessions

PASSWORD = "Correct-Horse-Battery-9"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any, django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        demo.seed(PASSWORD)


@pytest.fixture(scope="session")
def cast_password() -> str:
    """The cast's password, for tests that log in through the real login form (the browser)."""
    return PASSWORD


@pytest.fixture
def users(db: Any) -> dict[str, User]:
    return {u.username: u for u in User.objects.all()}


@pytest.fixture
def patients(db: Any) -> dict[str, Patient]:
    """Patient records by their user's name: patients["patient1"]."""
    return {p.user.username: p for p in Patient.objects.select_related("user")}


def log_in(client: Client, user: User) -> None:
    """Log ``user`` in on ``client`` the way the server does (``sessions.complete_login``), for a
    request that looks like the ones this client sends (same address, same User-Agent).

    The session guard refuses sessions that no real login request started (Django's own
    ``force_login`` logs in from a bare request: no client, so no binding); this is how the
    tests get a session bound to the test client, and to it alone.
    """
    sessions.start_client_session(client, user)


def _uses_database(request: pytest.FixtureRequest) -> bool:
    names = set(request.fixturenames)
    return bool(
        names & {"db", "transactional_db", "live_server", "django_db_reset_sequences"}
        or request.node.get_closest_marker("django_db") is not None
    )


@pytest.fixture(autouse=True)
def _fresh_shared_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with an empty shared store (every cache alias: throttle counters,
    blocks, budgets, monitor histories, challenges) and no ambient state left by an earlier
    test: the security layer's scorer, the diagnosis guard, and the vault's unwrapped keys and
    service secrets (an earlier test's secret, created in its rolled-back transaction, would
    bind this test's sessions to a key the database no longer holds), so tests pass alone, in
    any subset and in any order.

    The database-backed store is also rolled back with each test's transaction; it is cleared
    here too for tests that commit (live servers). Tests without the database have no
    database-backed store to clear."""
    from carevault.web.diagnosis import serving
    from carevault.web.securitycore import scorer
    from carevault.web.securitycore.runtime import reset_runtime
    from carevault.web.sharedstate import sealing
    from carevault.web.sharedstate.backend import SharedStateCache
    from carevault.web.vault import service

    with_db = _uses_database(request)
    if with_db:
        # Requesting the database here (before the test's own fixtures) is harmless: the
        # test asked for it anyway, the same kind, and the clear below needs it.
        marker = request.node.get_closest_marker("django_db")
        transactional = bool(
            {"transactional_db", "live_server"} & set(request.fixturenames)
            or (marker is not None and marker.kwargs.get("transaction"))
        )
        request.getfixturevalue("transactional_db" if transactional else "db")

    def clear_all() -> None:
        for alias in settings.CACHES:
            cache = caches[alias]
            if isinstance(cache, SharedStateCache) and not with_db:
                continue
            cache.clear()
        serving.reset()
        reset_runtime()
        # No scorer thread or queued event carries over; a test that wants the thread says so.
        scorer.reset()
        scorer.use_thread(False)
        service.reset_caches()
        sealing.reset()

    clear_all()
    yield
    clear_all()


@pytest.fixture(autouse=True)
def _own_audit_anchor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test anchors the audit chain in a directory of its own: the database is rolled
    back after every test, so checkpoints a test wrote would read as a truncated chain later."""
    from django.test import override_settings

    with override_settings(AUDIT_ANCHOR_DIR=tmp_path_factory.mktemp("anchor")):
        yield


@pytest.fixture(autouse=True)
def _force_login_starts_a_real_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """``client.force_login(user)`` in the web tests logs in through :func:`log_in`."""

    def force_login(self: Client, user: User, backend: str | None = None) -> None:
        log_in(self, user)

    monkeypatch.setattr(Client, "force_login", force_login)


@pytest.fixture
def requests_commit(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """Each request's on-commit callbacks run before its response is finished, as they do in
    production, where no transaction wraps a request and an action's callbacks run as it
    commits. The test's own transaction never commits: without this, the security layer's
    after-commit observer (securitycore/scoring.py) would never see a request's PHI reads and
    writes, predictions or key operations, nor answer them within the request."""
    from carevault.web.securitycore.middleware import SecurityMiddleware

    real_init = SecurityMiddleware.__init__

    def init(self: SecurityMiddleware, get_response: Callable[[Any], HttpResponse]) -> None:
        def committing(request: Any) -> HttpResponse:
            with django_capture_on_commit_callbacks(execute=True):
                return get_response(request)

        real_init(self, committing)

    monkeypatch.setattr(SecurityMiddleware, "__init__", init)


@pytest.fixture
def client_for(db: Any, users: dict[str, User]) -> Callable[[str | None], Client]:
    """A logged-in test client for a cast member (None: anonymous)."""

    def make(username: str | None) -> Client:
        client = Client()
        if username is not None:
            log_in(client, users[username])
        return client

    return make


def login_with_packet(
    client: Client, username: str, password: str, *, query: str = ""
) -> HttpResponse:
    """Log ``client`` in as the browser does: fetch a challenge, seal the credentials into a login
    packet, post it. Returns the packet endpoint's response (``{"ok": true, "next": ...}``)."""
    challenge = client.get(reverse("accounts:login_challenge")).json()
    packet = packets.seal_login_packet(challenge, username, password, challenge["issued"])
    url = reverse("accounts:login_packet") + query
    return client.post(url, json.dumps(packet), content_type="application/json")


@pytest.fixture
def packet_login() -> Callable[..., HttpResponse]:
    """``packet_login(client, username, password)``: see :func:`login_with_packet`."""
    return login_with_packet
