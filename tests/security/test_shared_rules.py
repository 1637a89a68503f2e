"""The rules the web layer checks with counts every worker shares (rules.SHARED_RULES): they
read named counts, not a process's feature vector, and stay below any blocking level."""

from __future__ import annotations

from collections import defaultdict, deque

from carevault.security import clinic_day, rules
from carevault.security.events import Event, EventKind
from carevault.security.features import FeatureExtractor
from carevault.security.response import Thresholds


def fired(event: Event, **counts: float) -> tuple[str, ...]:
    return rules.check(event, rules.SHARED_RULES, rules.Counts(counts)).fired


def refusals(count: int) -> Event:
    return Event(at=0.0, kind=EventKind.LOGIN_FAILURE, address="198.18.0.1", refused=count)


def test_a_run_of_refused_attempts_as_long_as_no_person_makes_is_a_program() -> None:
    assert fired(refusals(rules.REFUSED_PER_WINDOW)) == ("refused_run",)
    assert fired(refusals(rules.REFUSED_PER_WINDOW - 1)) == ()
    assert fired(refusals(0)) == ()


def test_the_throttles_evidence_fires_on_sign_ins_and_packets_only() -> None:
    for kind in (EventKind.LOGIN_FAILURE, EventKind.PACKET_REJECTED):
        assert fired(Event(at=0.0, kind=kind), throttle_limit=1) == ("throttle_limit",)
    assert fired(Event(at=0.0, kind=EventKind.LOGIN_SUCCESS), throttle_limit=1) == ()
    assert fired(Event(at=0.0, kind=EventKind.LOGIN_FAILURE)) == ()


def test_a_run_of_denials_counted_across_workers_is_probing() -> None:
    denial = Event(at=0.0, kind=EventKind.ACCESS_DENIED, actor="patient1")
    assert fired(denial, denied_actor_10m=rules.DENIALS_PER_10_MINUTES) == ("denial_run",)
    assert fired(denial, denied_actor_10m=rules.DENIALS_PER_10_MINUTES - 1) == ()


def test_a_spray_fires_on_shared_counts_and_guesses_at_one_account_do_not() -> None:
    guess = Event(at=0.0, kind=EventKind.LOGIN_FAILURE, actor="doctor2", role="doctor")
    # A forgotten password is the throttle's business (back-off, then suspension).
    assert fired(guess, fail_account_1h=rules.ACCOUNT_FAILURES_PER_HOUR) == ()
    spray = {
        "fail_address_1h": rules.ADDRESS_FAILURES_PER_HOUR,
        "accounts_address_10m": rules.ADDRESS_ACCOUNTS_PER_10_MINUTES,
    }
    assert fired(guess, **spray) == ("address_spray",)
    # A busy ward: a few names, a few typos.
    assert fired(guess, fail_address_1h=4, accounts_address_10m=3, fail_account_1h=3) == ()


def test_every_shared_rule_opens_an_incident_but_stays_below_containment() -> None:
    thresholds = Thresholds()
    for rule in rules.SHARED_RULES:
        assert thresholds.step_up <= rule.risk
    for rule in (rules.REFUSED_RUN, rules.THROTTLE_LIMIT):
        assert rule.risk < thresholds.contain


def test_counts_read_zero_for_anything_they_do_not_name() -> None:
    counts = rules.Counts({"fail_account_1h": 3})
    assert counts["fail_account_1h"] == 3.0
    assert counts["session_client_changed"] == 0.0
    assert list(counts) == ["fail_account_1h"]


def test_the_recorded_clinic_day_fires_no_shared_rule() -> None:
    # One stream, as the stored events every worker writes are: the extractor's counts are the
    # shared counts; packet rejections per address are counted here.
    extractor = FeatureExtractor()
    index = rules.feature_index()
    rejected: dict[str, deque[float]] = defaultdict(deque)
    for event in sorted(clinic_day.shipped(), key=lambda e: e.at):
        row = extractor.transform_one(event)
        counts = {name: row[index[name]] for name in rules.SHARED_COUNTS if name in index}
        if event.kind is EventKind.PACKET_REJECTED:
            window = rejected[event.address]
            window.append(event.at)
            while window[0] <= event.at - 600:
                window.popleft()
            counts["rejects_address_10m"] = len(window)
        assert rules.check(event, rules.SHARED_RULES, rules.Counts(counts)).fired == ()


def test_refused_uploads_fire_at_their_run_and_accepted_ones_never() -> None:
    limit = rules.REJECTED_UPLOADS_PER_10_MINUTES
    refused = Event(at=0.0, kind=EventKind.UPLOAD, actor="labtech1", outcome="failed")
    accepted = Event(at=0.0, kind=EventKind.UPLOAD, actor="labtech1")
    assert fired(refused, rejected_uploads_actor_10m=limit) == ("upload_run",)
    assert fired(refused, rejected_uploads_actor_10m=limit - 1) == ()
    assert fired(accepted, rejected_uploads_actor_10m=limit) == ()


def test_a_burst_of_break_the_glass_grants_fires_and_an_emergency_or_two_does_not() -> None:
    grant = Event(at=0.0, kind=EventKind.PHI_WRITE, actor="doctor2", role="doctor")
    limit = rules.BREAKGLASS_PER_HOUR
    assert fired(grant, breakglass_actor_1h=limit) == ("breakglass_burst",)
    assert fired(grant, breakglass_actor_1h=2) == ()
