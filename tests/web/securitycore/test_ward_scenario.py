"""A hospital ward's workstation, through the real login (issue 12): ten staff sign in at one
computer, one address, three times a day, and make the mistakes people make (wrong passwords,
caps lock, an e-mail address typed as the username, a misspelt username). Nobody may be locked
out: every one of them signs in, no address is blocked, no account suspended, the encryption
floor is not raised and no re-encryption starts, and no incident goes above what its evidence
permits (failed logins: "observe").

The scenario runs with the rules-based baseline, with the trained ensemble, and with a scorer
that rates every mistake as a certain attack: the evidence caps hold whatever the scorer says.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.test import Client
from django.urls import reverse
from security_helpers import FixedScorer, scoring_with

from carevault.modelstore.datadir import model_store
from carevault.security import training
from carevault.security.response import Level
from carevault.web.accounts.models import Role, User
from carevault.web.login import challenges, throttle
from carevault.web.securitycore.models import Incident, ResponseRecord, SecurityEvent
from carevault.web.securitycore.runtime import reset_runtime
from carevault.web.securitycore.state import current_floor
from carevault.web.vault.models import ReencryptionJob

pytestmark = pytest.mark.django_db

WARD = "10.20.30.40"  # the nurses' station (or the clinic's one NAT address)
NEW_STAFF = [("nurse1", Role.DOCTOR), ("nurse2", Role.DOCTOR), ("nurse3", Role.DOCTOR)]
NEW_STAFF += [("nurse4", Role.DOCTOR), ("nurse5", Role.DOCTOR), ("labtech2", Role.LABTECH)]
CAST_STAFF = ["doctor1", "doctor2", "labtech1", "admin"]
SHIFTS = 3
SECONDS_PER_ATTEMPT = 20  # a person reading the error and typing again


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("ward-trained")
    training.train(
        training.TrainConfig(seed=1, days=1.0, users=30, n_jobs=1), model_store(data_dir)
    )
    return data_dir


@pytest.fixture(params=["baseline", "trained", "certain-attack"])
def scorer(request, settings) -> Iterator[str]:
    if request.param == "trained":
        settings.DATA_DIR = request.getfixturevalue("model_dir")
        reset_runtime()
        yield request.param
    elif request.param == "certain-attack":
        with scoring_with(FixedScorer(1.0, kinds=("login_failure", "packet_rejected"))):
            yield request.param
    else:
        yield request.param


@pytest.fixture
def staff(settings, users, cast_password) -> list[str]:
    # MD5 for speed: which hasher says no does not matter to the throttle or the scorer.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for username, role in NEW_STAFF:
        User.objects.create(username=username, role=role, display_name=username.title())
    User.objects.filter(username__in=[n for n, _ in NEW_STAFF] + CAST_STAFF).update(
        password=make_password(cast_password)
    )
    return CAST_STAFF + [n for n, _ in NEW_STAFF]


def mistakes(rng: random.Random, username: str, password: str) -> list[tuple[str, str]]:
    """What a person gets wrong before getting in: zero to four of the usual slips."""
    slips = [
        (username, password[:-1]),  # a missed key
        (username, password.swapcase()),  # caps lock
        (f"{username}@stmarys-clinic.example", password),  # the e-mail address as username
        (username[:-1] + username[-1] * 2, password),  # a doubled key in the username
        (username.upper(), password + "1"),  # caps lock on the name, a stray key
        (username, password + password[-1]),
    ]
    return rng.sample(slips, rng.randint(0, 4))


def sign_in(packet_login: Any, username: str, password: str) -> Client:
    client = Client(REMOTE_ADDR=WARD)
    answer = packet_login(client, username, password)
    assert answer.status_code == 200, (username, answer.content)
    assert answer.json()["ok"] is True, username
    return client


@pytest.fixture
def ward_clock(clock, monkeypatch):
    """One clock for the throttle and the login challenges: people at the ward's computer take
    SECONDS_PER_ATTEMPT an attempt, so the challenges they fetch are paced as in a real day."""
    monkeypatch.setattr(challenges, "now", clock)
    return clock


def test_a_busy_ward_workstation_locks_nobody_out(
    scorer, staff, cast_password, ward_clock, packet_login
):
    clock = ward_clock
    rng = random.Random(12)
    failures = 0
    for _shift in range(SHIFTS):
        for username in staff:
            for name, password in mistakes(rng, username, cast_password):
                answer = packet_login(Client(REMOTE_ADDR=WARD), name, password)
                assert answer.status_code == 400, (name, answer.content)
                assert answer.json() == {"ok": False, "error": "Login failed."}
                failures += 1
                clock.advance(SECONDS_PER_ATTEMPT)
            client = sign_in(packet_login, username, cast_password)
            assert client.get(reverse("home")).status_code in (200, 302)
            clock.advance(SECONDS_PER_ATTEMPT)

    assert failures >= 50  # many ordinary mistakes, from one address
    assert SecurityEvent.objects.filter(kind="login_failure", address=WARD).count() == failures
    # Nobody was locked out, and nothing heavier than watching happened.
    assert throttle.blocked_addresses() == []
    assert not throttle.is_blocked(WARD)
    assert not User.objects.filter(suspended_at__isnull=False).exists()
    assert current_floor() is None
    assert not ReencryptionJob.objects.exists()
    assert not Incident.objects.filter(level__gte=Level.CONTAIN).exists()
    heavy = ResponseRecord.objects.exclude(action="step_up")
    assert list(heavy.values_list("action", "target")) == []
    # Everyone can still sign in at the end of the day.
    for username in staff:
        sign_in(packet_login, username, cast_password)
