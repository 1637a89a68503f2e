"""Responses in proportion to the evidence (issue 12): whatever the risk, each kind of evidence
causes only the responses its row of PERMITTED_BY_FINDING allows; an incident is rated no
higher than its evidence; handled subjects are left alone unless fresh evidence names them;
every action says what it is for, how long it lasts and who may lift it."""

from __future__ import annotations

import pytest

from carevault.security.assessment import Assessment
from carevault.security.events import Event, EventKind
from carevault.security.response import (
    PERMITTED_BY_FINDING,
    PERMITTED_BY_KIND,
    ActionKind,
    Evidence,
    Finding,
    Level,
    ResponseAction,
    ResponsePolicy,
    ResponseState,
    infer_findings,
    level_cap,
)

ADDRESS = "198.51.100.7"
SESSION = "5e55"
PATIENT = "3f1c2a4e-0000-4000-8000-000000000001"
EXPOSURE = {ActionKind.RAISE_FLOOR, ActionKind.ROTATE_KEYS}


def failed_login(actor: str = "nurse1") -> Event:
    return Event(
        at=1000.0, kind=EventKind.LOGIN_FAILURE, actor=actor, address=ADDRESS, outcome="failed"
    )


def known(*names: str, **changes) -> ResponseState:
    return ResponseState(known_accounts=frozenset(names), **changes)


def kinds(actions: list[ResponseAction]) -> set[ActionKind]:
    return {a.kind for a in actions}


@pytest.mark.parametrize("risk", [0.5, 0.75, 0.9, 0.99, 1.0])
def test_failed_logins_alone_never_block_an_address_raise_the_floor_or_rotate_keys(risk):
    actions = ResponsePolicy().plan(
        Assessment(risk=risk), failed_login(), known("nurse1", touched_patients={PATIENT})
    )
    assert actions == []
    assert ResponsePolicy().capped_level(Assessment(risk=risk), failed_login()) is Level.NONE
    assert Level.NONE.label == "observe"


def test_an_account_at_its_failure_limit_is_suspended_and_nothing_else_is_touched():
    guessing = (Finding(Evidence.ACCOUNT_GUESSING, "nurse1", "20 consecutive failed logins"),)
    actions = ResponsePolicy().plan(
        Assessment(risk=1.0), failed_login(), known("nurse1", touched_patients={PATIENT}), guessing
    )
    assert [(a.kind, a.target) for a in actions] == [
        (ActionKind.SUSPEND_ACCOUNT, "nurse1"),
        (ActionKind.REVOKE_SESSIONS, "nurse1"),
    ]
    assert "evidence: account_guessing (20 consecutive failed logins)" in actions[0].explanation


@pytest.mark.parametrize(
    "evidence", [Evidence.ADDRESS_SPRAYING, Evidence.UNKNOWN_NAMES, Evidence.FORGED_PACKETS]
)
def test_evidence_of_an_attack_from_an_address_blocks_only_that_address(evidence):
    finding = (Finding(evidence, ADDRESS),)
    actions = ResponsePolicy().plan(Assessment(risk=1.0), failed_login(), known("nurse1"), finding)
    assert [(a.kind, a.target) for a in actions] == [(ActionKind.THROTTLE_ADDRESS, ADDRESS)]


def test_only_evidence_of_exposed_data_or_keys_raises_the_floor_or_rotates_keys():
    exposing = {e for e, allowed in PERMITTED_BY_FINDING.items() if allowed & EXPOSURE}
    assert exposing == {
        Evidence.TAMPERED_DATA,
        Evidence.STOLEN_SESSION,
        Evidence.EXTRACTION_CUT_OFF,
    }
    assert not PERMITTED_BY_KIND[EventKind.LOGIN_FAILURE]
    assert not PERMITTED_BY_KIND[EventKind.LOGIN_FAILURE] & EXPOSURE
    assert not PERMITTED_BY_KIND[EventKind.PACKET_REJECTED]
    # Every evidence kind has a row: nothing is permitted by omission.
    assert set(PERMITTED_BY_FINDING) == set(Evidence)


def test_tampered_stored_data_is_answered_by_the_floor_and_the_patients_key_only():
    event = Event(
        at=1000.0,
        kind=EventKind.DECRYPTION_FAILURE,
        actor="doctor1",
        address=ADDRESS,
        session=SESSION,
        stored_data=True,
        patients=(PATIENT,),
    )
    actions = ResponsePolicy().plan(
        Assessment(risk=1.0), event, known("doctor1", live_session=SESSION)
    )
    assert kinds(actions) == EXPOSURE


def test_a_failure_on_input_is_not_evidence_about_stored_data():
    upload = Event(at=1000.0, kind=EventKind.DECRYPTION_FAILURE, address=ADDRESS)
    assert [f.evidence for f in infer_findings(Assessment(risk=1.0), upload)] == [
        Evidence.BAD_UPLOAD
    ]


def test_a_session_seen_from_two_clients_is_a_stolen_session_pattern():
    denial = Event(
        at=1000.0, kind=EventKind.ACCESS_DENIED, actor="doctor1", address=ADDRESS, session=SESSION
    )
    assessment = Assessment(risk=0.99, features={"session_clients": 2.0})
    assert Evidence.STOLEN_SESSION in {f.evidence for f in infer_findings(assessment, denial)}
    actions = ResponsePolicy().plan(
        assessment, denial, known("doctor1", live_session=SESSION, touched_patients={PATIENT})
    )
    assert ActionKind.RAISE_FLOOR in kinds(actions)
    assert ActionKind.THROTTLE_ADDRESS in kinds(actions)


def test_reading_many_records_acts_on_the_reader_not_on_the_address_or_the_keys():
    read = Event(
        at=1000.0,
        kind=EventKind.PHI_READ,
        actor="doctor1",
        address=ADDRESS,
        session=SESSION,
        patients=(PATIENT,),
    )
    actions = ResponsePolicy().plan(
        Assessment(risk=0.99), read, known("doctor1", live_session=SESSION)
    )
    assert kinds(actions) == {ActionKind.SUSPEND_ACCOUNT, ActionKind.REVOKE_SESSIONS}
    assert level_cap(infer_findings(Assessment(risk=0.99), read)) is Level.SUSPEND


def test_a_handled_subject_is_left_alone_until_fresh_evidence_names_it():
    stale = (Finding(Evidence.ADDRESS_SPRAYING, ADDRESS),)
    fresh = (Finding(Evidence.ADDRESS_SPRAYING, ADDRESS, fresh=True),)
    state = known("nurse1", handled=frozenset({f"address:{ADDRESS}"}))
    policy = ResponsePolicy()
    assert policy.plan(Assessment(risk=1.0), failed_login(), state, stale) == []
    assert kinds(policy.plan(Assessment(risk=1.0), failed_login(), state, fresh)) == {
        ActionKind.THROTTLE_ADDRESS
    }


def test_a_lowered_floor_is_not_raised_again_by_the_same_tampered_record():
    event = Event(
        at=1000.0, kind=EventKind.DECRYPTION_FAILURE, stored_data=True, patients=(PATIENT,)
    )
    state = ResponseState(handled=frozenset({"floor"}))
    actions = ResponsePolicy().plan(Assessment(risk=1.0), event, state)
    assert [(a.kind, a.target) for a in actions] == [(ActionKind.ROTATE_KEYS, PATIENT)]


def test_every_action_says_what_it_is_for_how_long_it_lasts_and_who_lifts_it():
    block = ResponseAction(ActionKind.THROTTLE_ADDRESS, Level.CONTAIN, ADDRESS, "why", 900)
    assert block.purpose == "stop an attack coming from this address"
    assert block.duration == "15 min, then it ends by itself"
    assert block.who_lifts == (
        "expires by itself after 15 min; the security officer may lift it sooner with "
        f"`carevault security unblock {ADDRESS}` or the dashboard"
    )
    suspension = ResponseAction(ActionKind.SUSPEND_ACCOUNT, Level.SUSPEND, "nurse1", "why")
    assert "`carevault security lift nurse1`" in suspension.who_lifts
    assert suspension.duration == "until lifted"
    floor = ResponseAction(ActionKind.RAISE_FLOOR, Level.ROTATE, "AES-256-GCM", "why", 86400)
    assert "`carevault security lift-floor`" in floor.who_lifts
    assert floor.duration == "24 h, then it ends by itself"
    for kind in ActionKind:
        action = ResponseAction(kind, Level.CONTAIN, "x", "why")
        assert all((action.purpose, action.duration, action.who_lifts))
