"""Attacks on the login, through the flow every login takes (login/flow.attempt_password_login):
brute force from one address, credential stuffing from many addresses against one account,
password spraying, forged forwarding headers, and the way back in for the real owner. Run on
the local memory cache and on the real Redis."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from throttle_helpers import ATTACKER, FakeClock, attempt, redis_cache, use_fast_hashes

from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.login import throttle
from carevault.web.login.flow import LoginOutcome, LoginResult

pytestmark = pytest.mark.django_db

WRONG = "Tr0ub4dor&3-but-wrong"
PROXY = "10.0.0.2"


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


@pytest.fixture(autouse=True)
def _fast_hashes(settings, users, cast_password):
    use_fast_hashes(settings, cast_password)


def audited(action):
    return list(AuditEntry.objects.filter(action=action).order_by("seq"))


def test_the_right_password_logs_in_and_clears_earlier_failures(cast_password):
    for _ in range(3):
        assert attempt("doctor1", WRONG).outcome is LoginOutcome.FAILED
    assert User.objects.get(username="doctor1").consecutive_failures == 3
    assert attempt("doctor1", cast_password).outcome is LoginOutcome.SUCCESS
    assert User.objects.get(username="doctor1").consecutive_failures == 0


def test_brute_force_from_one_address_meets_back_off_then_an_address_block(
    settings, cast_password, clock
):
    # A deployment that lowered the address limit (the default, 300, no ward reaches).
    settings.LOGIN_ADDRESS_MAX_FAILURES = 30
    # Five free guesses at doctor1, then the account makes the guesser wait.
    results = [attempt("doctor1", WRONG) for _ in range(5)]
    assert [r.outcome for r in results] == [LoginOutcome.FAILED] * 5
    # A failed password check never says how long to wait: that would tell right from wrong.
    assert [r.retry_after for r in results] == [0, 0, 0, 0, 0]
    assert throttle.check("doctor1", ATTACKER).retry_after == 1
    throttled = attempt("doctor1", cast_password)  # even the right password must wait
    assert (throttled.outcome, throttled.retry_after) == (LoginOutcome.PAUSED, 1)
    [counted] = audited("auth.refused_counted")
    assert counted.details["reason"] == throttle.REASON_ACCOUNT
    # The guesser moves on to the other accounts until the address has failed too often.
    others = ["doctor2", "labtech1", "patient1", "patient2", "admin"]
    for name in others:
        for _ in range(5):
            assert attempt(name, WRONG).outcome is LoginOutcome.FAILED
    assert User.objects.get(username="admin").consecutive_failures == 5
    failures = 5 * (1 + len(others))
    assert failures == settings.LOGIN_ADDRESS_MAX_FAILURES
    # Blocked: every account, every password, long after the back-offs have ended.
    clock.advance(60)
    blocked = attempt("patient3", cast_password)
    assert blocked.outcome is LoginOutcome.PAUSED
    assert blocked.retry_after == settings.LOGIN_ADDRESS_BLOCK_SECONDS - 60
    # Counted, not audited again: one summary row for the window.
    assert len(audited("auth.refused_counted")) == 1
    assert throttle.refused_count(ATTACKER) == 2
    [block] = audited("auth.address_blocked")
    assert (block.outcome, block.address) == ("alert", ATTACKER)
    assert block.details["reason"] == "30 failed logins in 15 min"
    assert block.details["evidence"] == throttle.EVIDENCE_FAILURES
    # Nobody else is affected.
    assert attempt("patient3", cast_password, address="192.0.2.44").outcome is LoginOutcome.SUCCESS


def test_credential_stuffing_from_many_addresses_backs_off_then_suspends_the_account(
    settings, cast_password, clock
):
    limit = settings.LOGIN_SUSPEND_AFTER
    addresses = (f"203.0.113.{n}" for n in range(1, 250))
    waits = []
    for n in range(limit):
        result = attempt("patient1", WRONG, address=next(addresses))
        assert (result.outcome, result.retry_after) == (LoginOutcome.FAILED, 0)
        wait = throttle.check("patient1", next(addresses)).retry_after
        waits.append(wait)
        if wait:
            # A fresh address does not escape the account's back-off.
            fresh = attempt("patient1", WRONG, address=next(addresses))
            assert fresh.retry_after == wait, n
            clock.advance(wait)
    assert waits[:8] == [0, 0, 0, 0, 1, 2, 4, 8]
    assert max(waits) == settings.LOGIN_BACKOFF_MAX_SECONDS
    patient = User.objects.get(username="patient1")
    assert patient.is_suspended
    assert patient.consecutive_failures == limit  # refused attempts were never password checks
    [entry] = audited("account.suspended")
    assert (entry.outcome, entry.target_id) == ("alert", str(patient.pk))
    # The right password is paused too, exactly like a wrong one.
    clock.advance(settings.LOGIN_BACKOFF_MAX_SECONDS)
    right = attempt("patient1", cast_password, address=next(addresses))
    wrong = attempt("patient1", WRONG, address=next(addresses))
    assert right == wrong
    assert right == LoginResult(LoginOutcome.PAUSED, settings.LOGIN_BACKOFF_MAX_SECONDS)
    assert User.objects.get(username="patient1").consecutive_failures == limit
    # No address was blocked: each sent one or two requests.
    assert throttle.blocked_addresses() == []


def test_password_spraying_from_one_address_blocks_the_address(settings, cast_password):
    settings.LOGIN_ADDRESS_UNKNOWN_PER_MINUTE = 10**6  # a slow sprayer: names, not the rate
    limit = settings.LOGIN_ADDRESS_MAX_USERNAMES
    names = ["admin", "doctor1", "doctor2", "labtech1", "patient1", "patient2"]
    names += [f"guess{n}" for n in range(limit - len(names))]
    for name in names[:-1]:
        assert attempt(name, "Winter2025!").retry_after == 0
    assert attempt(names[-1], "Winter2025!").outcome is LoginOutcome.FAILED
    blocked = attempt("admin", cast_password)  # the address is blocked, whatever the password
    assert blocked.retry_after == settings.LOGIN_ADDRESS_BLOCK_SECONDS
    [block] = audited("auth.address_blocked")
    assert block.details["reason"] == f"failed logins against {limit} account names in 15 min"
    # One failure per account: nobody's account was slowed down or suspended.
    assert not throttle.check("doctor1", "192.0.2.1").blocked
    assert not User.objects.filter(suspended_at__isnull=False).exists()
    # A blocked address is paused even with the right password, and nothing is logged in.
    assert attempt("patient3", cast_password).outcome is LoginOutcome.PAUSED
    assert User.objects.get(username="patient3").consecutive_failures == 0


def test_a_blocked_request_is_paused_even_with_the_right_password(settings, cast_password):
    for n in range(settings.LOGIN_ADDRESS_UNKNOWN_PER_MINUTE):
        attempt(f"spray{n}", WRONG)
    before = AuditEntry.objects.filter(action="auth.login").count()
    for name in ("doctor1", "patient2"):
        result = attempt(name, cast_password)
        assert result.outcome is LoginOutcome.PAUSED
        assert result.retry_after > 0
    assert AuditEntry.objects.filter(action="auth.login").count() == before


def test_without_trusted_proxies_a_forged_forwarded_header_changes_nothing(settings):
    settings.TRUSTED_PROXIES = 0
    for n in range(settings.LOGIN_ADDRESS_UNKNOWN_PER_MINUTE):
        attempt(f"spray{n}", WRONG, forwarded=f"192.0.2.{n + 1}")
    assert [b.address for b in throttle.blocked_addresses()] == [ATTACKER]
    # A new forged header does not get the attacker a fresh address.
    assert attempt("spray-more", WRONG, forwarded="192.0.2.200").retry_after > 0
    # The addresses the header named were never counted.
    assert throttle.address_counts("192.0.2.1") == (0, 0)


def test_behind_one_proxy_only_the_right_most_forwarded_entry_counts(settings, cast_password):
    settings.TRUSTED_PROXIES = 1
    settings.LOGIN_ADDRESS_MAX_USERNAMES = 10  # a deployment's lower limit; counted exactly
    # The proxy appends the peer it saw; everything to its left is the attacker's own writing.
    for n in range(settings.LOGIN_ADDRESS_MAX_USERNAMES):
        spoofed = f"192.0.2.{n + 1}, 10.{n}.0.1"
        attempt(f"spray{n}", WRONG, address=PROXY, forwarded=f"{spoofed}, {ATTACKER}")
    assert [b.address for b in throttle.blocked_addresses()] == [ATTACKER]
    assert throttle.address_counts(ATTACKER) == (10, 10)
    forged = attempt("doctor1", cast_password, address=PROXY, forwarded=f"192.0.2.99, {ATTACKER}")
    assert forged.outcome is LoginOutcome.PAUSED
    # The proxy itself, and every other client behind it, are not blocked.
    assert throttle.address_counts(PROXY) == (0, 0)
    other = attempt("doctor1", cast_password, address=PROXY, forwarded="192.0.2.50")
    assert other.outcome is LoginOutcome.SUCCESS


def test_a_suspended_owner_gets_back_in_once_the_suspension_is_lifted(settings, cast_password):
    for n in range(settings.LOGIN_SUSPEND_AFTER):
        throttle.record_failure("patient2", f"203.0.113.{n + 1}")
    patient = User.objects.get(username="patient2")
    assert attempt("patient2", cast_password, address="192.0.2.8").outcome is LoginOutcome.PAUSED
    # What the second factor and the password reset call (login/twofactor, password reset).
    assert throttle.lift_suspension(patient, actor=patient, reason="second factor")
    result = attempt("patient2", cast_password, address="192.0.2.8")
    assert result.outcome is LoginOutcome.SUCCESS
    assert [e.outcome for e in audited("account.suspended")] == ["alert"]
    [lift] = audited("account.unsuspended")
    assert (lift.actor, lift.target_id, lift.details["reason"]) == (
        "patient2",
        str(patient.pk),
        "second factor",
    )
