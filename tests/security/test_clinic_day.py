"""The recorded clinic day: the log shipped with CareVault loads, holds the day's patterns, and
replays through the trained scorer and the response planner without a single lock-out."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from _security_models import small_detectors

from carevault.security import clinic_day
from carevault.security.assessment import Assessment
from carevault.security.ensemble import RiskEnsemble
from carevault.security.events import AttackClass, Event, EventKind
from carevault.security.response import ResponsePolicy
from carevault.security.scoring import EnsembleRiskScorer
from carevault.security.training import build_dataset, evaluate_day


@pytest.fixture(scope="module")
def day() -> list[Event]:
    return clinic_day.shipped()


@pytest.fixture(scope="module")
def model() -> RiskEnsemble:
    """A small ensemble, trained as `carevault security train` does on fewer simulated days
    and accounts (two days of forty accounts is the least on which the clinic's sign-in
    mistakes outnumber chance)."""
    train, val = build_dataset(31, days=2.0, users=40), build_dataset(32, days=4.0, users=40)
    return RiskEnsemble(detectors=small_detectors(), fusion="stacking", random_state=0).fit(
        train.X, train.attack, X_val=val.X, y_val=val.attack, groups_val=val.groups
    )


def test_the_shipped_day_loads_in_time_order_and_is_all_benign(day: list[Event]) -> None:
    assert len(day) > 150
    assert [e.at for e in day] == sorted(e.at for e in day)
    assert {e.label for e in day} == {AttackClass.BENIGN}
    assert (max(e.at for e in day) - min(e.at for e in day)) / 3600 > 18


def test_the_shipped_day_holds_the_clinics_ordinary_mistakes_and_habits(day: list[Event]) -> None:
    failures = [e for e in day if e.kind is EventKind.LOGIN_FAILURE]
    # wrong passwords for real accounts, and names that are no account (typos, e-mails)
    assert any(e.role for e in failures)
    assert sum(1 for e in failures if e.actor.startswith("?")) >= 3
    # a ward workstation shared by several staff
    per_address = Counter((e.address, e.actor) for e in day if e.kind is EventKind.LOGIN_SUCCESS)
    staff = Counter(address for address, _ in per_address)
    assert max(staff.values()) >= 3
    # a doctor working through forty patients
    read = {}
    for e in day:
        if e.kind is EventKind.PHI_READ and e.records == 1:
            read.setdefault(e.actor, set()).update(e.patients)
    assert max(len(p) for p in read.values()) >= 40
    # a lab batch, night-shift sign-ins, patients on one carrier NAT address
    assert sum(1 for e in day if e.kind is EventKind.UPLOAD) >= 10
    assert any(e.kind is EventKind.LOGIN_SUCCESS and (e.at % 86_400) < 6 * 3600 for e in day)
    nat = {e.actor for e in day if e.address.startswith("100.64.") and e.role == "patient"}
    assert len(nat) >= 2


def test_an_event_survives_the_log_unchanged() -> None:
    event = Event(
        12.5,
        EventKind.UPLOAD,
        actor="lab.a",
        role="labtech",
        address="10.0.0.1",
        upload_bytes=1200,
        declared_type="application/pdf",
        sniffed_type="application/pdf",
        patients=("p1", "p2"),
    )
    assert clinic_day.from_json(clinic_day.to_json(event)) == event


def test_a_log_line_with_an_unknown_field_is_refused_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "day.jsonl"
    path.write_text('{"at": 1, "kind": "phi_read"}\n{"at": 2, "kind": "phi_read", "x": 1}\n')
    with pytest.raises(ValueError, match="line 2"):
        clinic_day.read(path)


def test_the_day_replays_with_no_step_up_block_or_suspension(
    day: list[Event], model: RiskEnsemble
) -> None:
    report = clinic_day.replay(day, EnsembleRiskScorer(model), ResponsePolicy())
    assert (report.stepped_up, report.blocked, report.suspended) == (0, 0, 0)
    assert report.key_actions == 0


def test_the_evaluation_reports_the_day_beside_the_simulator(model: RiskEnsemble) -> None:
    result = evaluate_day(model, None)
    assert result["log"] == "shipped"
    assert result["stepped_up"] == result["blocked"] == result["suspended"] == 0
    assert result["sessions"] > 10


class _Always:
    """A scorer that finds every event this risky (to see the planner's answers counted)."""

    def __init__(self, risk: float) -> None:
        self.risk = risk

    def assess(self, event: Event) -> Assessment:
        return Assessment(risk=self.risk)


def test_a_replay_counts_each_session_a_response_touched(day: list[Event]) -> None:
    stepped = clinic_day.replay(day, _Always(0.6))
    assert stepped.stepped_up > 0
    assert stepped.blocked == stepped.suspended == 0
    suspended = clinic_day.replay(day, _Always(0.9))
    assert suspended.suspended > 0
    assert suspended.blocked > 0
