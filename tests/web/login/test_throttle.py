"""The throttle's counters on their own: back-off per account name, the sliding window and blocks
per address, the registry of blocked addresses, suspension. Every test runs twice: on the local
memory cache (one machine) and on the real Redis (several app servers), to prove the atomic
add + incr counting works on both."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.cache import cache
from throttle_helpers import ATTACKER, FakeClock, redis_cache, require_redis

from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.login import throttle

pytestmark = pytest.mark.django_db

UNKNOWN = "nobody-by-this-name"


@pytest.fixture(params=["database", "redis"], autouse=True)
def backend(request, settings):
    cache.clear()
    if request.param == "redis":
        with redis_cache(settings):
            yield request.param
    else:
        yield request.param
        cache.clear()


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(throttle, "clock", fake)
    return fake


def fail(username, times=1, address=ATTACKER):
    for _ in range(times):
        throttle.record_failure(username, address)


def fail_from_many(username, times):
    """Failures against one name, each from an address of its own (no address limit applies)."""
    for n in range(times):
        throttle.record_failure(username, f"10.{n // 250}.{n % 250}.1")


# -- back-off per account name ---------------------------------------------------------------------


def test_a_few_failures_do_not_slow_anyone_down():
    fail_from_many("doctor1", 4)
    assert throttle.check("doctor1", ATTACKER) == throttle.ThrottleDecision(False)


def test_from_the_fifth_failure_each_attempt_waits_twice_as_long(clock):
    fail_from_many(UNKNOWN, 4)
    waits = []
    for n in range(5):
        throttle.record_failure(UNKNOWN, f"10.9.0.{n}")
        decision = throttle.check(UNKNOWN, "192.0.2.1")
        assert decision.blocked
        assert decision.reason == throttle.REASON_ACCOUNT
        waits.append(decision.retry_after)
        clock.advance(decision.retry_after - 0.5)
        assert throttle.check(UNKNOWN, "192.0.2.1").blocked
        clock.advance(0.5)
        assert not throttle.check(UNKNOWN, "192.0.2.1").blocked
    assert waits == [1, 2, 4, 8, 16]


def test_the_back_off_is_capped(settings):
    fail_from_many(UNKNOWN, 40)
    assert throttle.check(UNKNOWN, "192.0.2.1").retry_after == settings.LOGIN_BACKOFF_MAX_SECONDS


def test_the_back_off_applies_from_every_address():
    fail_from_many("doctor1", 5)
    for address in ("192.0.2.1", "2001:db8::1", "invalid"):
        assert throttle.check("doctor1", address).blocked


def test_the_name_counts_however_it_is_written():
    for spelling in ("doctor1", "Doctor1", "  DOCTOR1 ", "ｄｏｃｔｏｒ１", "doctor1"):  # noqa: RUF001
        throttle.record_failure(spelling, "192.0.2.1")
    assert throttle.check("doctor1", "192.0.2.2").blocked


def test_existing_and_unknown_names_get_the_same_answers(clock):
    def answers(username):
        seen = []
        for n in range(12):
            throttle.record_failure(username, f"10.0.{n}.9")
            seen.append(throttle.check(username, "192.0.2.1"))
        return seen

    assert answers("patient3") == answers(UNKNOWN)


def test_a_success_ends_the_back_off_and_the_run_of_failures(users):
    fail_from_many("patient1", 7)
    assert throttle.check("patient1", ATTACKER).blocked
    patient = User.objects.get(username="patient1")
    assert patient.consecutive_failures == 7
    throttle.record_success(patient, ATTACKER)
    assert not throttle.check("patient1", ATTACKER).blocked
    patient.refresh_from_db()
    assert patient.consecutive_failures == 0


# -- per address -----------------------------------------------------------------------------------


def test_too_many_failures_from_one_address_block_it(settings):
    limit = settings.LOGIN_ADDRESS_MAX_FAILURES
    names = ["doctor1", "doctor2", "labtech1", "patient1", "patient2"]
    for n in range(limit - 1):
        throttle.record_failure(names[n % len(names)], ATTACKER)
    assert not throttle.check("patient3", ATTACKER).blocked
    throttle.record_failure("doctor1", ATTACKER)
    decision = throttle.check("patient3", ATTACKER)
    assert decision.blocked
    assert decision.reason == throttle.REASON_ADDRESS
    assert decision.retry_after == settings.LOGIN_ADDRESS_BLOCK_SECONDS
    assert not throttle.check("patient3", "192.0.2.1").blocked


def test_failures_against_too_many_names_block_the_address(settings):
    settings.LOGIN_ADDRESS_UNKNOWN_PER_MINUTE = 10**6  # counted apart (tests below)
    limit = settings.LOGIN_ADDRESS_MAX_USERNAMES
    for n in range(limit - 1):
        throttle.record_failure(f"user{n}", ATTACKER)
    assert throttle.address_counts(ATTACKER) == (limit - 1, limit - 1)
    assert not throttle.check("someone-else", ATTACKER).blocked
    throttle.record_failure("user0", ATTACKER)  # a name already counted adds no name
    assert not throttle.check("someone-else", ATTACKER).blocked
    throttle.record_failure(f"user{limit}", ATTACKER)
    assert throttle.check("someone-else", ATTACKER).reason == throttle.REASON_ADDRESS
    blocked = AuditEntry.objects.get(action="auth.address_blocked")
    assert blocked.outcome == "alert"
    assert blocked.details["address"] == ATTACKER
    assert "account names" in blocked.details["reason"]


def test_the_address_window_slides(clock, settings):
    window = settings.LOGIN_ADDRESS_WINDOW_SECONDS
    fail("doctor1", 20)
    assert throttle.address_counts(ATTACKER) == (20, 1)
    clock.advance(window)  # the failures are now the previous bucket, still fully in the window
    assert throttle.address_counts(ATTACKER) == (20, 1)
    clock.advance(window / 2)  # half of that bucket has slid out of the window
    assert throttle.address_counts(ATTACKER) == (10, 1)
    clock.advance(window / 2)
    assert throttle.address_counts(ATTACKER) == (0, 0)


def test_an_address_block_ends_by_itself(clock, settings):
    fail("doctor1", settings.LOGIN_ADDRESS_MAX_FAILURES)
    assert throttle.check(UNKNOWN, ATTACKER).blocked
    clock.advance(settings.LOGIN_ADDRESS_BLOCK_SECONDS)
    assert not throttle.check(UNKNOWN, ATTACKER).blocked
    assert throttle.blocked_addresses() == []


def test_a_block_is_recorded_once_however_many_failures_follow(settings):
    fail("doctor1", settings.LOGIN_ADDRESS_MAX_FAILURES + 5)
    assert AuditEntry.objects.filter(action="auth.address_blocked").count() == 1
    assert [block.address for block in throttle.blocked_addresses()] == [ATTACKER]


def test_the_registry_lists_each_blocked_address_until_it_is_unblocked(settings, users, clock):
    for address in ("198.51.100.1", "2001:db8::7", "198.51.100.2"):
        fail("doctor1", settings.LOGIN_ADDRESS_MAX_FAILURES, address=address)
        clock.advance(1)
    listed = throttle.blocked_addresses()
    assert [block.address for block in listed] == ["198.51.100.2", "2001:db8::7", "198.51.100.1"]
    assert all(block.until > block.since for block in listed)
    assert throttle.unblock_address("2001:db8::7", actor=users["admin"])
    assert [b.address for b in throttle.blocked_addresses()] == ["198.51.100.2", "198.51.100.1"]
    assert not throttle.check(UNKNOWN, "2001:db8::7").blocked
    # Its recent failures are forgotten too, or the next failure would block it again at once.
    throttle.record_failure("doctor1", "2001:db8::7")
    assert not throttle.check(UNKNOWN, "2001:db8::7").blocked
    assert not throttle.unblock_address("2001:db8::7", actor=users["admin"])
    entries = AuditEntry.objects.filter(action="auth.address_unblocked")
    assert [(e.actor, e.details["address"]) for e in entries] == [("admin", "2001:db8::7")]


def test_an_expired_block_can_be_placed_again(clock, settings):
    fail("doctor1", settings.LOGIN_ADDRESS_MAX_FAILURES)
    clock.advance(settings.LOGIN_ADDRESS_BLOCK_SECONDS)
    fail("doctor1", settings.LOGIN_ADDRESS_MAX_FAILURES)
    assert throttle.check(UNKNOWN, ATTACKER).blocked
    assert AuditEntry.objects.filter(action="auth.address_blocked").count() == 2


# -- suspension ------------------------------------------------------------------------------------


def test_an_account_is_suspended_at_the_threshold_and_the_suspension_is_audited(settings):
    limit = settings.LOGIN_SUSPEND_AFTER
    fail_from_many("patient2", limit - 1)
    patient = User.objects.get(username="patient2")
    assert not patient.is_suspended
    fail_from_many("Patient2", 1)  # any spelling attacks the same account
    patient.refresh_from_db()
    assert patient.is_suspended
    assert patient.consecutive_failures == limit
    assert patient.suspension_reason == f"{limit} consecutive failed logins"
    entry = AuditEntry.objects.get(action="account.suspended")
    assert entry.outcome == "alert"
    assert entry.target_id == str(patient.pk)
    assert entry.details == {
        "username": "patient2",
        "reason": patient.suspension_reason,
        "failures": limit,
    }
    fail_from_many("patient2", 3)  # suspended once, audited once
    assert AuditEntry.objects.filter(action="account.suspended").count() == 1


def test_the_suspension_threshold_stays_within_nist_limit(settings):
    assert 1 <= settings.LOGIN_SUSPEND_AFTER <= 100


def test_lifting_a_suspension_resets_the_account_and_is_audited(settings, users):
    fail_from_many("labtech1", settings.LOGIN_SUSPEND_AFTER)
    tech = User.objects.get(username="labtech1")
    assert tech.is_suspended
    assert throttle.check("labtech1", "192.0.2.1").blocked
    assert throttle.lift_suspension(tech, actor=tech, reason="second factor")
    assert not tech.is_suspended
    tech.refresh_from_db()
    assert (tech.suspended_at, tech.suspension_reason, tech.consecutive_failures) == (None, "", 0)
    assert not throttle.check("labtech1", "192.0.2.1").blocked
    entry = AuditEntry.objects.get(action="account.unsuspended")
    assert entry.actor == "labtech1"
    assert entry.details["reason"] == "second factor"
    assert entry.details["suspension_reason"].endswith("consecutive failed logins")


def test_lifting_without_an_actor_is_audited_as_the_system(settings, users):
    fail_from_many("doctor2", settings.LOGIN_SUSPEND_AFTER)
    doctor = User.objects.get(username="doctor2")
    assert throttle.lift_suspension(doctor, actor=None, reason="password reset")
    entry = AuditEntry.objects.get(action="account.unsuspended")
    assert (entry.actor, entry.details["reason"]) == ("", "password reset")


def test_lifting_an_account_that_is_not_suspended_audits_nothing(users):
    fail_from_many("doctor1", 3)
    doctor = User.objects.get(username="doctor1")
    assert not throttle.lift_suspension(doctor, actor=users["admin"], reason="officer")
    doctor.refresh_from_db()
    assert doctor.consecutive_failures == 0
    assert not AuditEntry.objects.filter(action="account.unsuspended").exists()


# -- configuration ---------------------------------------------------------------------------------


def test_the_address_limits_by_default_are_beyond_what_a_ward_reaches(settings):
    assert settings.LOGIN_ADDRESS_MAX_USERNAMES == 100
    assert settings.LOGIN_ADDRESS_MAX_FAILURES == 300
    assert settings.LOGIN_ADDRESS_UNKNOWN_PER_MINUTE == 20
    assert settings.LOGIN_ADDRESS_MAX_FORGED_PACKETS == 20
    assert settings.SECURITY_HANDLED_HOURS == 24


@pytest.mark.parametrize("backend", ["database"], indirect=True)
def test_the_address_limits_can_be_set_from_the_environment(backend, tmp_path):
    env = {
        **os.environ,
        "CAREVAULT_DATA_DIR": str(tmp_path),
        "CAREVAULT_LOGIN_ADDRESS_MAX_USERNAMES": "40",
        "CAREVAULT_LOGIN_ADDRESS_MAX_FAILURES": "120",
        "CAREVAULT_LOGIN_ADDRESS_UNKNOWN_PER_MINUTE": "30",
        "CAREVAULT_LOGIN_ADDRESS_MAX_FORGED_PACKETS": "5",
        "CAREVAULT_SECURITY_HANDLED_HOURS": "8",
    }
    code = (
        "import carevault.web.settings as s; print(s.LOGIN_ADDRESS_MAX_USERNAMES, "
        "s.LOGIN_ADDRESS_MAX_FAILURES, s.LOGIN_ADDRESS_UNKNOWN_PER_MINUTE, "
        "s.LOGIN_ADDRESS_MAX_FORGED_PACKETS, s.SECURITY_HANDLED_HOURS)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["40", "120", "30", "5", "8"]


@pytest.mark.parametrize("backend", ["database"], indirect=True)
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CAREVAULT_LOGIN_SUSPEND_AFTER", "101", "at most 100"),
        ("CAREVAULT_LOGIN_BACKOFF_AFTER", "five", "whole number"),
        ("CAREVAULT_LOGIN_ADDRESS_UNKNOWN_PER_MINUTE", "0", "at least 1"),
        ("CAREVAULT_LOGIN_ADDRESS_MAX_FORGED_PACKETS", "-3", "at least 1"),
        ("CAREVAULT_SECURITY_HANDLED_HOURS", "0", "at least 1"),
    ],
)
def test_settings_refuse_unsafe_thresholds(backend, tmp_path, variable, value, message):
    env = {**os.environ, variable: value, "CAREVAULT_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", "import carevault.web.settings"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert variable in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("backend", ["database"], indirect=True)
def test_an_unreachable_redis_fails_the_test_with_a_clear_message(backend):
    with pytest.raises(pytest.fail.Exception, match="Redis is not reachable"):
        require_redis("redis://127.0.0.1:1/0")
