"""Handled-at marks (handled.py): an officer's unblock or lift marks the evidence behind it, for
SECURITY_HANDLED_HOURS, in Django's cache (shared by every process when the cache is), under a
keyed hash of the subject."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from carevault.web.login import handled, throttle

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh():
    cache.clear()
    yield
    cache.clear()


def test_a_mark_says_when_and_is_found_among_others():
    at = handled.mark(handled.address("192.0.2.5"), by="admin", now=1_800_000_000.0)
    assert handled.handled_at(handled.address("192.0.2.5")) == at
    assert handled.is_handled(handled.address("192.0.2.5"))
    wanted = [handled.address("192.0.2.5"), handled.account("doctor1"), handled.FLOOR]
    assert handled.handled(wanted) == {handled.address("192.0.2.5")}
    handled.clear(handled.address("192.0.2.5"))
    assert not handled.is_handled(handled.address("192.0.2.5"))


def test_a_mark_lasts_the_configured_hours(settings, monkeypatch):
    settings.SECURITY_HANDLED_HOURS = 3
    seen = {}
    real_set = cache.set

    def spy(key, value, timeout=None, **kwargs):
        seen[key] = timeout
        return real_set(key, value, timeout, **kwargs)

    monkeypatch.setattr(cache, "set", spy)
    handled.mark(handled.FLOOR)
    assert list(seen.values()) == [3 * 3600]
    # The subject is not in the key: a reader of the cache cannot list who was handled.
    assert all("floor" not in key for key in seen)


def test_an_officers_lift_marks_the_account_and_the_owners_own_does_not(users, settings):
    for n in range(settings.LOGIN_SUSPEND_AFTER):
        throttle.record_failure("patient1", f"203.0.113.{n + 1}")
        throttle.record_failure("patient2", f"203.0.113.{n + 1}")
    patient1, patient2 = users["patient1"], users["patient2"]
    assert throttle.lift_suspension(patient1, actor=patient1, reason="second factor")
    assert throttle.lift_suspension(patient2, actor=users["admin"], reason="officer")
    assert not handled.is_handled(handled.account("patient1"))
    assert handled.is_handled(handled.account("patient2"))
