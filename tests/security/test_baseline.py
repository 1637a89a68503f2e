"""The rules-based fallback scorer (no Django): counts over a window, hard rules, caps that keep
it in step with the login throttle, and the loader that prefers a trained model."""

from __future__ import annotations

import sys
import types

import pytest

from carevault.security import baseline
from carevault.security.assessment import Assessment
from carevault.security.baseline import (
    BaselineLimits,
    BaselineScorer,
    MemoryHistory,
    load_scorer_or_baseline,
    ramp,
)
from carevault.security.events import Event, EventKind
from carevault.security.response import Level, Thresholds

ATTACKER = "198.51.100.7"
LEVEL = Thresholds().level


def event(kind, at, **fields) -> Event:
    return Event(at=at, kind=kind, **fields)


def failure(at, actor="doctor1", address=ATTACKER, outcome="failed") -> Event:
    return event(EventKind.LOGIN_FAILURE, at, actor=actor, address=address, outcome=outcome)


def test_the_ramp_reaches_contain_at_the_limit_and_suspend_at_twice_the_limit():
    assert ramp(0, 10) == 0.0
    assert ramp(5, 10) == 0.4
    assert ramp(10, 10) == 0.7
    assert ramp(20, 10) == 0.85
    assert ramp(1000, 10) == 0.95
    assert ramp(20, 10, cap=0.8) == 0.8


def test_an_ordinary_login_and_read_are_no_risk():
    scorer = BaselineScorer()
    login = event(EventKind.LOGIN_SUCCESS, 0, actor="doctor1", address="192.0.2.10")
    assert scorer.assess(login).risk == 0.0
    read = event(EventKind.PHI_READ, 1, actor="doctor1", patients=("p1",))
    assessment = scorer.assess(read)
    assert assessment.risk < 0.1
    assert assessment.detectors == {"baseline": assessment.risk}


@pytest.mark.parametrize("kind", [EventKind.DECRYPTION_FAILURE, EventKind.SIGNATURE_FAILURE])
def test_an_integrity_failure_on_stored_data_is_risk_one_whatever_the_counts(kind):
    assessment = BaselineScorer().assess(event(kind, 0, stored_data=True, patients=("p1",)))
    assert assessment.risk == 1.0
    assert assessment.rules in (("aead_failure_at_rest",), ("signature_failure_at_rest",))
    # The same failure on input (an upload, a login packet) is not a hard rule.
    assert BaselineScorer().assess(event(kind, 0, stored_data=False)).risk < 1.0


def test_guessing_one_account_stays_below_contain_until_the_suspension_limit():
    limits = BaselineLimits(account_failures=20, address_failures=1000, address_accounts=1000)
    scorer = BaselineScorer(limits)
    levels = [LEVEL(scorer.assess(failure(n)).risk) for n in range(22)]
    # The login throttle's back-off slows the guesser meanwhile; the account is the victim.
    assert max(levels[:20]) == Level.STEP_UP
    assert levels[20] == Level.SUSPEND  # 20 failures before this one: the throttle suspended
    assert scorer.assess(failure(30)).features["account_failures"] == 22


def test_one_address_failing_against_many_accounts_is_contained_but_never_suspends_anyone():
    scorer = BaselineScorer(BaselineLimits(address_accounts=10))
    risks = [scorer.assess(failure(n, actor=f"user{n}")).risk for n in range(60)]
    assert LEVEL(risks[9]) < Level.CONTAIN  # the throttle blocks at the 10th name itself
    assert LEVEL(risks[10]) == Level.CONTAIN
    assert max(risks) <= 0.8


def test_a_login_after_guesses_from_the_same_address_asks_for_step_up_then_contains():
    def success_after(n: int) -> float:
        scorer = BaselineScorer()
        for i in range(n):
            scorer.assess(failure(i, actor="patient3"))
        success = event(EventKind.LOGIN_SUCCESS, 100, actor="patient3", address=ATTACKER)
        return scorer.assess(success).risk

    assert LEVEL(success_after(3)) == Level.NONE  # a few typos
    assert LEVEL(success_after(5)) == Level.STEP_UP
    assert LEVEL(success_after(10)) == Level.CONTAIN


def test_a_login_from_elsewhere_after_guesses_is_not_suspicious():
    scorer = BaselineScorer()
    for i in range(15):
        scorer.assess(failure(i, actor="patient3"))
    home = event(EventKind.LOGIN_SUCCESS, 100, actor="patient3", address="192.0.2.44")
    assert scorer.assess(home).risk == 0.0


def test_reading_many_patients_is_scraping_but_lists_and_rereads_are_not():
    scorer = BaselineScorer(BaselineLimits(distinct_patients=10))
    for i in range(30):  # the same record, again and again (a page refreshed)
        same = scorer.assess(event(EventKind.PHI_READ, i, actor="doctor1", patients=("p1",)))
    assert LEVEL(same.risk) == Level.NONE
    many = tuple(f"p{i}" for i in range(40))
    listing = scorer.assess(event(EventKind.PHI_READ, 40, actor="doctor1", patients=many))
    assert LEVEL(listing.risk) == Level.NONE
    for i in range(20):
        last = scorer.assess(
            event(EventKind.PHI_READ, 50 + i, actor="doctor1", patients=(f"q{i}",))
        )
    assert LEVEL(last.risk) == Level.SUSPEND
    assert last.features["distinct_patients"] == 21


def test_probing_other_peoples_records_escalates_with_the_denials():
    scorer = BaselineScorer(BaselineLimits(access_denials=10))
    denial = [
        scorer.assess(event(EventKind.ACCESS_DENIED, i, actor="patient1", outcome="denied")).risk
        for i in range(25)
    ]
    assert LEVEL(denial[4]) == Level.NONE
    assert LEVEL(denial[10]) == Level.CONTAIN
    assert LEVEL(denial[24]) == Level.SUSPEND


def test_a_session_seen_from_a_second_client_is_contained():
    scorer = BaselineScorer()
    own = dict(actor="patient1", session="s1", address="192.0.2.5", client="firefox")
    scorer.assess(event(EventKind.PHI_READ, 0, patients=("p1",), **own))
    stolen = {**own, "address": "203.0.113.9", "client": "curl"}
    assessment = scorer.assess(event(EventKind.ACCESS_DENIED, 1, outcome="denied", **stolen))
    assert LEVEL(assessment.risk) == Level.CONTAIN
    assert assessment.features["session_clients"] == 2


def test_events_older_than_the_window_are_forgotten():
    scorer = BaselineScorer(BaselineLimits(window_seconds=60, address_accounts=5))
    for n in range(5):
        scorer.assess(failure(n, actor=f"user{n}"))
    assert LEVEL(scorer.assess(failure(10, actor="user9")).risk) == Level.CONTAIN
    assert scorer.assess(failure(200, actor="user10")).risk == 0.0


def test_malformed_uploads_ask_for_step_up():
    bad = event(
        EventKind.UPLOAD,
        0,
        actor="labtech1",
        declared_type="application/pdf",
        sniffed_type="application/x-dosexec",
        header_ok=False,
        key_bytes=17,
    )
    assessment = BaselineScorer().assess(bad)
    assert LEVEL(assessment.risk) == Level.STEP_UP
    assert set(assessment.features) == {
        "upload_header_invalid",
        "upload_type_mismatch",
        "upload_key_bytes",
    }


def test_host_load_opens_an_incident_at_most():
    flood = event(EventKind.HOST, 0, cpu=1.0, net_mbps=5000.0, latency_ms=9000.0)
    assessment = BaselineScorer().assess(flood)
    assert LEVEL(assessment.risk) == Level.STEP_UP
    assert assessment.features["host_net_mbps"] == 5000.0


def test_the_memory_history_keeps_only_its_horizon():
    history = MemoryHistory(horizon_seconds=100)
    for n in range(10):
        history.add(failure(n * 50, actor=f"user{n}"))
    assert history.count({EventKind.LOGIN_FAILURE}, 0, address=ATTACKER) == 3


# -- choosing the scorer ---------------------------------------------------------------------------


class FixedScorer:
    name = "fixed"
    version = "7"
    trained_at = "2026-01-01T00:00:00"

    def assess(self, event: Event) -> Assessment:
        return Assessment(risk=0.5)


@pytest.fixture
def fake_trained(monkeypatch):
    module = types.ModuleType("fake_trained_scoring")
    monkeypatch.setitem(sys.modules, "fake_trained_scoring", module)
    monkeypatch.setattr(baseline, "TRAINED_MODULE", "fake_trained_scoring")
    return module


def test_the_trained_model_is_preferred_when_the_data_directory_has_one(fake_trained, tmp_path):
    fake_trained.load_scorer = lambda data_dir: FixedScorer()
    loaded = load_scorer_or_baseline(tmp_path, BaselineScorer())
    assert (loaded.kind, loaded.name, loaded.version) == ("trained", "fixed", "7")
    assert loaded.trained_at == "2026-01-01T00:00:00"


def test_without_a_trained_model_the_baseline_says_so(fake_trained, tmp_path):
    fallback = BaselineScorer()
    fake_trained.load_scorer = lambda data_dir: None
    loaded = load_scorer_or_baseline(tmp_path, fallback)
    assert loaded.scorer is fallback
    assert (loaded.kind, loaded.name) == ("baseline", "baseline")
    assert "security train" in loaded.note


def test_a_model_that_fails_its_seal_is_refused_loudly_and_the_baseline_used(
    fake_trained, tmp_path, caplog
):
    def refuse(data_dir):
        raise ValueError("signature does not verify")

    fake_trained.load_scorer = refuse
    loaded = load_scorer_or_baseline(tmp_path, BaselineScorer())
    assert loaded.kind == "baseline"
    assert "signature does not verify" in loaded.note
    assert "refused" in caplog.text


def test_without_the_trained_scorer_module_the_baseline_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(baseline, "TRAINED_MODULE", "carevault.security.no_such_module")
    loaded = load_scorer_or_baseline(tmp_path, BaselineScorer())
    assert loaded.kind == "baseline"
    assert "no trained scorer" in loaded.note
