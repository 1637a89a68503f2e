"""The officer's way back in (operator.py, behind `carevault security ...`) and lifts that last:
unblocking, lifting and lowering the floor mark the evidence handled, so the same evidence does
not fire the same response again."""

from __future__ import annotations

import pytest
from django.db.models import F
from django.urls import reverse
from security_helpers import WRONG, FixedScorer, attempt, scoring_with, use_fast_hashes

from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.clinic.models import Diagnosis
from carevault.web.login import handled, throttle
from carevault.web.securitycore import operator
from carevault.web.securitycore.models import ResponseRecord
from carevault.web.securitycore.state import current_floor

pytestmark = pytest.mark.django_db

SPRAYER = "198.51.100.99"


def spray(clock, settings, address=SPRAYER, start=0, count=None):
    """Failures against ``count`` names (default: the address limit), slowly (names, not the
    rate)."""
    count = settings.LOGIN_ADDRESS_MAX_USERNAMES if count is None else count
    for n in range(start, start + count):
        attempt(clock, f"sprayed{n}", WRONG, address=address)
        clock.advance(4)


def tamper(patient):
    diagnosis = Diagnosis.objects.filter(patient=patient).first()
    Diagnosis.objects.filter(pk=diagnosis.pk).update(
        code_enc=F("description_enc"), description_enc=F("code_enc")
    )


def test_status_lists_blocks_suspensions_the_floor_and_who_lifts_each(settings, clock):
    throttle.block_address(SPRAYER, "a test block")
    for n in range(settings.LOGIN_SUSPEND_AFTER):
        throttle.record_failure("patient2", f"203.0.113.{n + 1}")
    facts = operator.status()
    [block] = facts["blocked_addresses"]
    assert (block["address"], block["reason"]) == (SPRAYER, "a test block")
    assert f"`carevault security unblock {SPRAYER}`" in block["who_lifts"]
    assert block["who_lifts"].startswith("expires by itself after 15 min")
    [suspended] = facts["suspended_accounts"]
    assert suspended["username"] == "patient2"
    assert "`carevault security lift patient2`" in suspended["who_lifts"]
    assert facts["floor"] is None
    text = operator.render_status(facts)
    assert "blocked addresses: 1" in text
    assert "an address is blocked at 100 account names or 300 failures per 15 min" in text


def test_unblock_refuses_what_is_not_an_address_and_changes_nothing():
    with pytest.raises(operator.OperatorError, match="is not an IP address"):
        operator.unblock("not-an-address")
    assert not handled.is_handled(handled.address("not-an-address"))


def test_lift_refuses_an_unknown_account():
    with pytest.raises(operator.OperatorError, match="no account is named 'nobody'"):
        operator.lift("nobody")


def test_lift_ends_a_suspension_and_the_back_off_and_marks_the_account_handled(settings):
    for n in range(settings.LOGIN_SUSPEND_AFTER):
        throttle.record_failure("patient2", f"203.0.113.{n + 1}")
    assert throttle.check("patient2", "192.0.2.1").blocked
    done = operator.lift("Patient2")
    assert done.message == "lifted the suspension of patient2; its back-off is cleared"
    assert not User.objects.get(username="patient2").is_suspended
    assert not throttle.check("patient2", "192.0.2.1").blocked
    assert handled.is_handled(handled.account("patient2"))
    entry = AuditEntry.objects.filter(action="account.unsuspended").latest("seq")
    assert entry.actor == ""  # the system: whoever runs the server's command line
    assert operator.lift("patient2").message == (
        "patient2 was not suspended; its back-off is cleared"
    )


def test_an_unblock_lasts_the_same_evidence_does_not_block_the_address_again(
    settings, users, cast_password, clock
):
    use_fast_hashes(settings, cast_password)
    settings.LOGIN_ADDRESS_UNKNOWN_PER_MINUTE = 10**6
    # Every failure rated a certain attack: only the evidence decides what may happen.
    with scoring_with(FixedScorer(1.0, kinds=("login_failure",))):
        spray(clock, settings)
        assert throttle.is_blocked(SPRAYER)
        done = operator.unblock(SPRAYER)
        assert done.facts["was_blocked"] is True
        assert handled.is_handled(handled.address(SPRAYER))
        # More failures from it: the history the scorer sees is unchanged, but nothing fires.
        for n in range(5):
            attempt(clock, f"again{n}", WRONG, address=SPRAYER)
        assert not throttle.is_blocked(SPRAYER)
        # Fresh evidence of a new attack, counted from zero since the unblock, blocks it again.
        spray(clock, settings, start=1000, count=settings.LOGIN_ADDRESS_MAX_USERNAMES - 5)
        assert throttle.is_blocked(SPRAYER)


def test_a_lowered_floor_is_not_raised_again_by_reading_the_same_tampered_record(
    client_for, patients
):
    tamper(patients["patient1"])
    detail = reverse("clinic:patient_detail", args=[patients["patient1"].pk])
    client_for("doctor1").get(detail)
    assert current_floor() is not None
    done = operator.lift_floor()
    assert done.message.startswith("lowered the floor AES-256-GCM")
    assert ResponseRecord.objects.get(action="raise_floor").status == "lifted"
    assert handled.is_handled(handled.FLOOR)
    client_for("doctor1").get(detail)
    assert current_floor() is None
    assert operator.lift_floor().message == "no floor was raised; nothing to lower"


def test_incidents_lists_the_responses_in_force_with_who_lifts_them(client_for, patients):
    tamper(patients["patient1"])
    client_for("doctor1").get(reverse("clinic:patient_detail", args=[patients["patient1"].pk]))
    [incident] = operator.incidents()
    assert incident["level"] == "rotate"
    [floor] = incident["in_force"]
    assert floor["action"] == "raise_floor"
    assert "`carevault security lift-floor`" in floor["who_lifts"]
    assert "#" in operator.render_incidents([incident])
    assert operator.render_incidents([]) == "no active incidents"


def test_activity_lists_scored_events_and_incidents_of_any_status_since_a_moment(
    client_for, patients
):
    import datetime as dt

    from django.utils import timezone

    before = timezone.now() - dt.timedelta(seconds=1)
    tamper(patients["patient1"])
    client_for("doctor1").get(reverse("clinic:patient_detail", args=[patients["patient1"].pk]))
    seen = operator.activity(before)
    assert seen["events"], "the read of the tampered record is an event"
    assert all(e["risk"] is not None for e in seen["events"]), "unscored events are scored first"
    [incident] = seen["incidents"]
    assert incident["level"] == "rotate"
    assert incident["opened"]
    assert incident["responses"][0]["action"] == "raise_floor"
    assert any(e["incident"] == incident["id"] for e in seen["events"])
    later = operator.activity(timezone.now() + dt.timedelta(minutes=5))
    assert later["events"] == []
    assert later["incidents"] == []
