"""The login challenge endpoint answers each client address a bounded number of times a minute
(one counter in the shared store for every worker): beyond it, 429 with a JSON error and
Retry-After; other addresses, and the next minute, are not affected."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from carevault.web.login import challenges

pytestmark = pytest.mark.django_db

CHALLENGE = reverse("accounts:login_challenge")
MINUTE_START = 1_800_000_000.0  # a whole minute


@pytest.fixture
def at(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    moment = [MINUTE_START + 15]
    monkeypatch.setattr(challenges, "now", lambda: moment[0])
    return moment


def test_an_address_gets_its_challenges_per_minute_then_429(settings, at) -> None:
    settings.LOGIN_CHALLENGES_PER_MINUTE = 3
    client = Client(REMOTE_ADDR="192.0.2.10")
    assert [client.get(CHALLENGE).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get(CHALLENGE)
    assert refused.status_code == 429
    assert refused.json()["ok"] is False
    assert refused.json()["error"] == (
        "Too many sign-ins from this computer this minute; try again in 45 seconds."
    )
    assert refused.json()["retry_after"] == 45
    assert refused["Retry-After"] == "45"  # the rest of the minute
    assert refused["Cache-Control"] == "no-store"


def test_another_address_and_the_next_minute_are_not_affected(settings, at) -> None:
    settings.LOGIN_CHALLENGES_PER_MINUTE = 2
    busy = Client(REMOTE_ADDR="192.0.2.10")
    for _ in range(3):
        busy.get(CHALLENGE)
    assert busy.get(CHALLENGE).status_code == 429
    assert Client(REMOTE_ADDR="192.0.2.11").get(CHALLENGE).status_code == 200
    at[0] = MINUTE_START + 60
    assert busy.get(CHALLENGE).status_code == 200


def test_the_counter_keeps_no_address_in_clear(settings, at) -> None:
    from carevault.web.sharedstate.models import SharedStateEntry

    Client(REMOTE_ADDR="192.0.2.77").get(CHALLENGE)
    assert not SharedStateEntry.objects.filter(key__contains="192.0.2.77").exists()


def test_refused_challenges_are_counted_with_the_addresss_refused_sign_ins(settings, at) -> None:
    from carevault.web.audit.models import AuditEntry
    from carevault.web.login import throttle

    settings.LOGIN_CHALLENGES_PER_MINUTE = 2
    flood = Client(REMOTE_ADDR="192.0.2.12")
    for _ in range(2 + throttle.REFUSED_RUN):
        flood.get(CHALLENGE)
    assert throttle.refused_count("192.0.2.12") == throttle.REFUSED_RUN
    # One summary row for the window, one for the run: never a row per refused request.
    refusals = AuditEntry.objects.filter(action__startswith="auth.refused").order_by("seq")
    actions = list(refusals.values_list("action", flat=True))
    assert actions == ["auth.refused_counted", "auth.refused_run"]
