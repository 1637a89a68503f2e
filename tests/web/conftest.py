"""The fixed cast (healthchecks style): the demo seed, created once per test session and rolled
back after every test, so each test starts from the same clinic.

Users: admin (security officer), doctor1 (patients 1 and 2), doctor2 (patient 3), labtech1,
patient1, patient2, patient3. All share ``PASSWORD``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from carevault.web import demo
from carevault.web.accounts.models import User
from carevault.web.clinic.models import Patient

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


@pytest.fixture
def client_for(db: Any, users: dict[str, User]) -> Callable[[str | None], Client]:
    """A logged-in test client for a cast member (None: anonymous)."""

    def make(username: str | None) -> Client:
        client = Client()
        if username is not None:
            client.force_login(users[username])
        return client

    return make
