"""The graduated response policy on its own (no Django): which level a risk reaches, which
actions a level takes against what an event implicates, what is never repeated, and how a plan
is carried out through any sink. The level mechanics are shown with evidence that permits every
action (EVERYTHING); tests/security/test_response_evidence.py shows the evidence caps."""

from __future__ import annotations

import pytest

from carevault.crypto.errors import UnknownSuiteError
from carevault.security.assessment import Assessment
from carevault.security.events import Event, EventKind
from carevault.security.response import (
    ActionKind,
    Evidence,
    Finding,
    Level,
    RecordingSink,
    ResponseAction,
    ResponseConfig,
    ResponsePolicy,
    ResponseState,
    Subjects,
    Thresholds,
    execute,
    explain,
)

SESSION = "5e55"
ADDRESS = "198.51.100.7"
PATIENT = "3f1c2a4e-0000-4000-8000-000000000001"
OTHER_PATIENT = "3f1c2a4e-0000-4000-8000-000000000002"


def read(actor="doctor1", session=SESSION, patients=(PATIENT,)) -> Event:
    return Event(
        at=1000.0,
        kind=EventKind.PHI_READ,
        actor=actor,
        role="doctor",
        address=ADDRESS,
        session=session,
        patients=patients,
    )


def live(**changes) -> ResponseState:
    """A logged-in doctor1 whose session is the one being served."""
    return ResponseState(live_session=SESSION, known_accounts=frozenset({"doctor1"}), **changes)


# Evidence that permits every response: the level alone decides what happens.
EVERYTHING = tuple(Finding(evidence) for evidence in Evidence)


def plan(risk, event=None, state=None, findings=EVERYTHING, **assessment):
    return ResponsePolicy().plan(
        Assessment(risk=risk, **assessment), event or read(), state or live(), findings
    )


def kinds(actions):
    return [(a.kind, a.target) for a in actions]


# -- thresholds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("risk", "level"),
    [
        (0.0, Level.NONE),
        (0.49, Level.NONE),
        (0.5, Level.STEP_UP),
        (0.7, Level.CONTAIN),
        (0.85, Level.SUSPEND),
        (0.95, Level.ROTATE),
        (1.0, Level.ROTATE),
    ],
)
def test_the_default_thresholds_map_risks_to_levels(risk, level):
    assert Thresholds().level(risk) is level


def test_thresholds_are_configurable_and_must_increase_within_zero_and_one():
    assert Thresholds.parse("0.2, 0.4, 0.6, 0.8").level(0.45) is Level.CONTAIN
    for text in ("0.5,0.5,0.8,0.9", "0.5,0.7,0.85", "0,0.5,0.7,0.9", "0.5,0.7,0.9,1.1", "a,b,c,d"):
        with pytest.raises(ValueError, match="thresholds"):
            Thresholds.parse(text)


def test_the_floor_suite_must_be_a_known_suite():
    assert ResponseConfig(floor_suite="aes-256-gcm").floor_suite == "AES-256-GCM"
    with pytest.raises(UnknownSuiteError):
        ResponseConfig(floor_suite="AES-256-CBC")


# -- the levels ------------------------------------------------------------------------------------


def test_a_low_risk_plans_nothing():
    assert plan(0.3) == []


def test_a_moderate_risk_only_asks_the_live_session_for_a_second_factor():
    actions = plan(0.55)
    assert kinds(actions) == [(ActionKind.STEP_UP, SESSION)]
    assert actions[0].level is Level.STEP_UP
    assert not actions[0].reversible


def test_step_up_is_not_asked_twice_nor_of_a_session_that_cannot_be_reached():
    assert plan(0.55, state=live(step_up_pending=True)) == []
    # A session seen in the event but not the one being served: nothing at this level.
    assert plan(0.55, state=ResponseState(known_accounts=frozenset({"doctor1"}))) == []


def test_containing_ends_the_session_and_blocks_the_address_for_a_while():
    actions = plan(0.75)
    assert kinds(actions) == [
        (ActionKind.BLOCK_SESSION, SESSION),
        (ActionKind.THROTTLE_ADDRESS, ADDRESS),
    ]
    block = actions[1]
    assert block.seconds == ResponseConfig().address_block_seconds
    assert block.reversible


def test_a_session_that_cannot_be_reached_is_contained_through_its_account():
    # Scored later (a batch): the session is not the one being served.
    later = ResponseState(known_accounts=frozenset({"doctor1"}))
    assert kinds(plan(0.75, state=later)) == [
        (ActionKind.REVOKE_SESSIONS, "doctor1"),
        (ActionKind.THROTTLE_ADDRESS, ADDRESS),
    ]
    assert plan(0.75, state=later)[0].level is Level.CONTAIN


def test_suspending_covers_the_session_with_a_revocation_and_still_blocks_the_address():
    actions = plan(0.9)
    assert kinds(actions) == [
        (ActionKind.THROTTLE_ADDRESS, ADDRESS),
        (ActionKind.SUSPEND_ACCOUNT, "doctor1"),
        (ActionKind.REVOKE_SESSIONS, "doctor1"),
    ]
    assert {a.level for a in actions} == {Level.CONTAIN, Level.SUSPEND}


def test_the_top_level_contains_the_attacker_rotates_touched_patients_and_raises_the_floor():
    state = live(touched_patients=frozenset({OTHER_PATIENT}))
    actions = plan(0.99, state=state)
    assert kinds(actions) == [
        (ActionKind.THROTTLE_ADDRESS, ADDRESS),
        (ActionKind.SUSPEND_ACCOUNT, "doctor1"),
        (ActionKind.REVOKE_SESSIONS, "doctor1"),
        (ActionKind.RAISE_FLOOR, "AES-256-GCM"),
        (ActionKind.ROTATE_KEYS, PATIENT),
        (ActionKind.ROTATE_KEYS, OTHER_PATIENT),
    ]
    floor = actions[3]
    assert floor.seconds == 24 * 3600
    assert floor.reversible


def test_tampered_stored_data_rotates_the_patient_key_and_blames_nobody_who_read_it():
    event = Event(
        at=1000.0,
        kind=EventKind.DECRYPTION_FAILURE,
        actor="doctor1",
        address=ADDRESS,
        session=SESSION,
        stored_data=True,
        patients=(PATIENT,),
    )
    actions = plan(1.0, event=event, rules=("aead_failure_at_rest",))
    assert kinds(actions) == [
        (ActionKind.RAISE_FLOOR, "AES-256-GCM"),
        (ActionKind.ROTATE_KEYS, PATIENT),
    ]
    assert "aead_failure_at_rest" in actions[0].explanation


def test_what_is_in_force_already_is_never_repeated():
    state = live(
        blocked_addresses=frozenset({ADDRESS}),
        suspended_accounts=frozenset({"doctor1"}),
        revoked_accounts=frozenset({"doctor1"}),
        rotated_patients=frozenset({PATIENT}),
        floor_raised=True,
    )
    assert plan(0.99, state=state) == []


def test_a_failed_login_suspends_only_an_account_that_exists():
    guess = Event(
        at=1000.0,
        kind=EventKind.LOGIN_FAILURE,
        actor="?0a1b2c3d",
        address=ADDRESS,
        outcome="failed",
    )
    guessing = (Finding(Evidence.ACCOUNT_GUESSING, "?0a1b2c3d"),)
    assert plan(0.9, event=guess, state=ResponseState(), findings=guessing) == []
    known = Event(at=1000.0, kind=EventKind.LOGIN_FAILURE, actor="patient1", address=ADDRESS)
    state = ResponseState(known_accounts=frozenset({"patient1"}))
    guessing = (Finding(Evidence.ACCOUNT_GUESSING, "patient1"),)
    assert kinds(plan(0.9, event=known, state=state, findings=guessing)) == [
        (ActionKind.SUSPEND_ACCOUNT, "patient1"),
        (ActionKind.REVOKE_SESSIONS, "patient1"),
    ]


def test_a_login_that_proved_the_second_factor_is_not_stepped_up_or_contained():
    login = Event(
        at=1000.0, kind=EventKind.LOGIN_SUCCESS, actor="doctor1", address=ADDRESS, session=SESSION
    )
    proven = live(second_factor_proven=True)
    assert plan(0.55, event=login, state=proven) == []
    assert plan(0.75, event=login, state=proven) == []
    # High enough, and the owner's proof does not outweigh it.
    assert ActionKind.SUSPEND_ACCOUNT in [a.kind for a in plan(0.9, event=login, state=proven)]


def test_an_escalation_plan_covers_every_subject_of_an_incident():
    subjects = Subjects(addresses=("192.0.2.1", "192.0.2.2"), accounts=("patient1",))
    actions = ResponsePolicy().plan_level(Level.SUSPEND, subjects, ResponseState(), "escalated")
    assert kinds(actions) == [
        (ActionKind.THROTTLE_ADDRESS, "192.0.2.1"),
        (ActionKind.THROTTLE_ADDRESS, "192.0.2.2"),
        (ActionKind.SUSPEND_ACCOUNT, "patient1"),
        (ActionKind.REVOKE_SESSIONS, "patient1"),
    ]
    assert all(a.explanation == "escalated" for a in actions)


def test_custom_thresholds_and_durations_are_used():
    config = ResponseConfig(
        thresholds=Thresholds(0.1, 0.2, 0.3, 0.4), address_block_seconds=60, floor_seconds=600
    )
    actions = ResponsePolicy(config).plan(Assessment(risk=0.25), read(), live(), EVERYTHING)
    assert kinds(actions)[-1] == (ActionKind.THROTTLE_ADDRESS, ADDRESS)
    assert actions[-1].seconds == 60


# -- explanations and execution --------------------------------------------------------------------


def test_the_explanation_names_the_event_rules_detectors_and_features():
    assessment = Assessment(
        risk=0.91,
        detectors={"iforest": 0.95, "ocsvm": 0.4, "forest": 0.99},
        features={"distinct_patients": 40.0, "hour_deviation": 2.5},
    )
    text = explain(assessment, read(), Level.SUSPEND)
    assert text.startswith("risk 0.91 (suspend) on phi_read by doctor1 from 198.51.100.7")
    assert "detectors: forest 0.99, iforest 0.95, ocsvm 0.40" in text
    assert "features: distinct_patients=40, hour_deviation=2.5" in text


class FailingRotation(RecordingSink):
    def rotate_keys(self, action: ResponseAction) -> str:
        raise OSError("key store unavailable")


def test_one_failing_action_does_not_stop_the_others():
    sink = FailingRotation()
    results = execute(plan(0.99), sink)
    assert [r.ok for r in results] == [True, True, True, True, False]
    assert results[-1].note == "OSError: key store unavailable"
    assert sink.kinds() == [
        ActionKind.THROTTLE_ADDRESS,
        ActionKind.SUSPEND_ACCOUNT,
        ActionKind.REVOKE_SESSIONS,
        ActionKind.RAISE_FLOOR,
    ]
