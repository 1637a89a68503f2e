"""The login's remaining leaks (issue 12, item 4), through the login flow and the packet view:

* every path for a paused name (suspended, backed off, blocked address) does the same work (one
  password hash) and writes the same state, right password or wrong, account or no account;
* refused packets from a blocked address are counted, not audited one row each;
* forged or replayed packets, and unknown names at a machine's rate, block an address;
* a failed sign-in is audited with a keyed hash of the attempted name, never the text;
* a security officer with a second factor is never locked out of the web sign-in.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher, make_password
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from throttle_helpers import ATTACKER, FakeClock, attempt

from carevault.crypto import otp
from carevault.web.accounts import names
from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.login import flow, sessions, throttle, twofactor
from carevault.web.login.flow import LoginOutcome
from carevault.web.securitycore.models import SecurityEvent
from carevault.web.vault import service

pytestmark = pytest.mark.django_db

WRONG = "Tr0ub4dor&3-but-wrong"
PACKET = reverse("accounts:login_packet")
VERIFY = reverse("account_security:verify")


class CountingHasher(MD5PasswordHasher):
    """MD5 (fast) that counts how many passwords it hashed: ``verify`` hashes through
    ``encode``, so every check and every new hash passes here once."""

    algorithm = "md5"
    hashed: ClassVar[int] = 0

    def encode(self, password: str, salt: str) -> str:
        CountingHasher.hashed += 1
        return super().encode(password, salt)


@pytest.fixture(autouse=True)
def _fresh(settings, users, cast_password):
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    User.objects.update(password=make_password(cast_password))
    cache.clear()
    flow._stand_ins.clear()
    yield
    cache.clear()
    flow._stand_ins.clear()


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(throttle, "clock", fake)
    return fake


def suspend_by_guessing(username: str, settings: Any) -> None:
    for n in range(settings.LOGIN_SUSPEND_AFTER):
        throttle.record_failure(username, f"203.0.113.{n + 1}")


def observed(username: str, password: str, address: str = ATTACKER) -> dict[str, Any]:
    """One attempt, and everything it did: hashes, answer, audit rows, security events, the
    account's row, the name's throttle state and the address's refusal count."""
    flow._stand_in()  # made once per process, before anything is counted
    audit_before = AuditEntry.objects.count()
    events_before = SecurityEvent.objects.count()
    refused_before = throttle.refused_count(address)
    CountingHasher.hashed = 0
    result = attempt(username, password, address=address)
    account = User.objects.filter(username__iexact=username).first()
    return {
        "hashes": CountingHasher.hashed,
        "result": result,
        "audit": list(
            AuditEntry.objects.order_by("seq")[audit_before:].values_list("action", "outcome")
        ),
        "events": SecurityEvent.objects.count() - events_before,
        "account": (
            (account.consecutive_failures, account.suspended_at, account.last_login)
            if account is not None
            else None
        ),
        "throttle": throttle.check(username, address),
        "refused": throttle.refused_count(address) - refused_before,
    }


def without_account(facts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in facts.items() if k != "account"}


# -- the same work and the same state on every paused path ----------------------------------------


def test_a_suspended_account_does_the_same_work_for_the_right_and_the_wrong_password(
    settings, cast_password
):
    suspend_by_guessing("doctor2", settings)
    suspend_by_guessing("nobody-by-this-name", settings)
    # The window's first refusal, whatever it is, writes the summary row; compare after it.
    observed("doctor2", WRONG)
    right = observed("doctor2", cast_password)
    wrong = observed("doctor2", WRONG)
    assert right["hashes"] == wrong["hashes"] == 1
    assert right == wrong
    assert right["result"] == flow.LoginResult(
        LoginOutcome.PAUSED, settings.LOGIN_BACKOFF_MAX_SECONDS
    )
    # A name no account has, paused the same way: the same work and the same answer.
    for password in (cast_password, WRONG):
        unknown = observed("nobody-by-this-name", password)
        assert without_account(unknown) == without_account(wrong)


def test_a_blocked_address_does_the_same_work_for_every_name_and_password(cast_password):
    throttle.block_address(ATTACKER, "a test block")
    paths = [
        observed("doctor1", cast_password),
        observed("doctor1", WRONG),
        observed("no-such-person@example.org", cast_password),
        observed("no-such-person@example.org", WRONG),
    ]
    assert [p["hashes"] for p in paths] == [1, 1, 1, 1]
    assert all(p["result"].outcome is LoginOutcome.PAUSED for p in paths)
    # Only the first refusal of the window writes an audit row (the summary); none is an event.
    assert paths[0]["audit"] == [("auth.refused_counted", "denied")]
    assert [without_account(p) for p in paths[2:]] == [without_account(paths[1])] * 2
    assert paths[1] == paths[0] | {"audit": []}
    assert paths[0]["account"] == paths[1]["account"]  # nothing written to the account
    assert [p["events"] for p in paths] == [0, 0, 0, 0]


def test_an_account_in_back_off_does_the_same_work_for_the_right_and_the_wrong_password(
    settings, cast_password
):
    for _ in range(settings.LOGIN_BACKOFF_AFTER):
        attempt("patient1", WRONG)
    right = observed("patient1", cast_password)
    wrong = observed("patient1", WRONG)
    assert right["hashes"] == 1
    assert right | {"audit": []} == wrong
    assert right["result"].outcome is LoginOutcome.PAUSED


def test_a_sign_in_that_is_not_paused_still_checks_one_password(cast_password):
    flow._stand_in()
    CountingHasher.hashed = 0
    assert attempt("doctor1", WRONG).outcome is LoginOutcome.FAILED
    assert CountingHasher.hashed == 1


# -- refused packets are counted, not audited one row each ---------------------------------------


def test_junk_sent_at_a_blocked_address_is_counted_not_audited_row_by_row(settings):
    throttle.block_address(ATTACKER, "a test block")
    client = Client(REMOTE_ADDR=ATTACKER)
    audit_before = AuditEntry.objects.count()
    events_before = SecurityEvent.objects.count()
    for n in range(300):
        answer = client.post(PACKET, b"junk %d" % n, content_type="application/json")
        assert answer.status_code == 429
    assert throttle.refused_count(ATTACKER) == 300
    new = AuditEntry.objects.order_by("seq")[audit_before:]
    # The window's first refusal, and one summary of the run when it got as long as no person
    # makes it: two rows for 300 requests, and one security event (the run).
    assert [e.action for e in new] == ["auth.refused_counted", "auth.refused_run"]
    assert new[1].details["refused"] == throttle.REFUSED_RUN
    assert SecurityEvent.objects.count() == events_before + 1
    body = answer.json()
    assert body["retry_after"] == int(answer["Retry-After"]) > 0
    assert body["error"].startswith("Sign-in is paused for this account name or this computer")


def test_forged_packets_block_the_address_at_their_limit_and_expired_ones_never_do(settings):
    limit = settings.LOGIN_ADDRESS_MAX_FORGED_PACKETS
    assert not throttle.record_forged_packet(ATTACKER, "expired")
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(limit - 1):
        assert client.post(PACKET, b"{}", content_type="application/json").status_code == 400
    assert not throttle.is_blocked(ATTACKER)
    assert client.post(PACKET, b"{}", content_type="application/json").status_code == 400
    assert throttle.is_blocked(ATTACKER)
    [block] = AuditEntry.objects.filter(action="auth.address_blocked")
    assert block.details["evidence"] == throttle.EVIDENCE_FORGED
    assert AuditEntry.objects.filter(action="auth.packet_rejected").count() == limit
    # From now on: counted.
    for _ in range(5):
        assert client.post(PACKET, b"{}", content_type="application/json").status_code == 429
    assert AuditEntry.objects.filter(action="auth.packet_rejected").count() == limit
    assert throttle.refused_count(ATTACKER) == 5


def test_unknown_names_faster_than_a_person_types_block_the_address(settings, clock):
    rate = settings.LOGIN_ADDRESS_UNKNOWN_PER_MINUTE
    # A person (or a ward of them): half the rate every minute for five minutes, never blocked.
    for minute in range(5):
        for n in range(rate // 2):
            throttle.record_failure(f"typo-{minute}-{n}", "192.0.2.60")
        clock.advance(60)
    assert not throttle.is_blocked("192.0.2.60")
    # A machine: the rate within one minute.
    clock.advance(60 - clock.now % 60)
    for n in range(rate):
        throttle.record_failure(f"guess{n}", ATTACKER)
    assert throttle.is_blocked(ATTACKER)
    [block] = AuditEntry.objects.filter(action="auth.address_blocked")
    assert block.details["evidence"] == throttle.EVIDENCE_UNKNOWN


# -- no attempted username in the audit log ------------------------------------------------------


def test_a_failed_sign_in_records_a_keyed_hash_of_the_name_never_the_text(users):
    typed = "Jane.Doe@example.org"
    attempt(typed, WRONG)
    attempt("doctor1", WRONG)
    unknown, known = AuditEntry.objects.filter(action="auth.login_failed").order_by("seq")
    assert unknown.details == {"username_hash": names.username_hash(typed)}
    assert "jane" not in json.dumps(unknown.details).lower()
    assert (unknown.target_type, unknown.target_id) == ("", "")
    # The hash is keyed by a secret of the key hierarchy, not a plain digest of the name.
    assert unknown.details["username_hash"] not in hashlib.sha256(typed.encode()).hexdigest()
    assert names.username_hash(" jane.doe@EXAMPLE.org") == names.username_hash(typed)
    assert service.service_secret(names.SECRET_NAME)
    # An existing account is the entry's target (its username is no secret); the text is not kept.
    assert known.details == {"username_hash": names.username_hash("doctor1")}
    assert known.target_id == str(users["doctor1"].pk)
    # The security event names the account, or a hash for a name no account has.
    failures = SecurityEvent.objects.filter(kind="login_failure").order_by("pk")
    assert [e.actor for e in failures] == [f"?{unknown.details['username_hash'][:16]}", "doctor1"]


# -- the officer's way back in -------------------------------------------------------------------


def give_totp(user: User) -> Any:
    secret = otp.generate_totp_secret()
    user.totp_wrapped = service.master().wrap(
        secret.expose(), {"purpose": "totp", "user": str(user.pk)}
    )
    user.totp_confirmed_at = timezone.now()
    user.save(update_fields=["totp_wrapped", "totp_confirmed_at"])
    return secret


def test_the_officer_signs_in_from_a_blocked_address_with_the_second_factor(
    users, cast_password, packet_login
):
    secret = give_totp(users["admin"])
    throttle.block_address(ATTACKER, "a test block")
    # Anyone else at the blocked address is paused ...
    paused = packet_login(Client(REMOTE_ADDR=ATTACKER), "doctor1", cast_password)
    assert paused.status_code == 429
    # ... the officer is asked for the second factor instead, and gets in with it.
    client = Client(REMOTE_ADDR=ATTACKER)
    answer = packet_login(client, "admin", cast_password)
    assert answer.status_code == 200
    assert answer.json()["next"].startswith(VERIFY)
    done = client.post(VERIFY, {"code": otp.totp_code(secret, sessions.now())})
    assert done.status_code == 302
    assert client.get("/api/v1/me").json()["username"] == "admin"
    assert throttle.is_blocked(ATTACKER)  # the block itself stays for everyone else


def test_the_paused_second_step_needs_the_right_password_as_well_as_the_code(users, packet_login):
    secret = give_totp(users["admin"])
    throttle.block_address(ATTACKER, "a test block")
    client = Client(REMOTE_ADDR=ATTACKER)
    # The wrong password gets the same second step (it must not tell right from wrong) ...
    answer = packet_login(client, "admin", WRONG)
    assert answer.status_code == 200
    assert answer.json()["next"].startswith(VERIFY)
    # ... where even a valid code fails.
    refused = client.post(VERIFY, {"code": otp.totp_code(secret, sessions.now())})
    assert refused.status_code == 400
    assert client.get("/api/v1/me").status_code != 200


def test_the_paused_second_step_is_offered_a_bounded_number_of_times_an_hour(users, packet_login):
    give_totp(users["admin"])
    throttle.block_address(ATTACKER, "a test block")
    answers = [
        packet_login(Client(REMOTE_ADDR=ATTACKER), "admin", WRONG).status_code
        for _ in range(twofactor.PAUSED_SECOND_STEPS_PER_HOUR + 1)
    ]
    assert answers == [200] * twofactor.PAUSED_SECOND_STEPS_PER_HOUR + [429]
