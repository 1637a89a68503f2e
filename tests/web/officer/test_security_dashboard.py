"""The security layer on the officer's dashboard: the risk timeline (JSON for the chart),
incidents with their explanation, responses in force, the floor, detector health, key versions;
and the officer's decisions (acknowledge, escalate, close, lift, lower the floor), all audited.
Officers only, and never a patient's identity or clinical text."""

from __future__ import annotations

import pytest
from django.db.models import F
from django.urls import reverse
from security_helpers import WRONG, FixedScorer, attempt, scoring_with

from carevault.web import demo
from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.clinic.models import Diagnosis
from carevault.web.login import throttle
from carevault.web.officer import dashboard
from carevault.web.securitycore.models import Incident, ResponseRecord
from carevault.web.securitycore.state import current_floor

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_security")]

DASHBOARD = reverse("officer:dashboard")
TIMELINE = reverse("officer:risk_timeline")
INCIDENTS = reverse("officer:incidents")
STATE = reverse("officer:security_state")


def latest(action):
    return AuditEntry.objects.filter(action=action).order_by("-seq").first()


def tamper(patient):
    diagnosis = Diagnosis.objects.filter(patient=patient).first()
    Diagnosis.objects.filter(pk=diagnosis.pk).update(
        code_enc=F("description_enc"), description_enc=F("code_enc")
    )


def response(action, target=None):
    found = ResponseRecord.objects.filter(action=action)
    return (found.filter(target=target) if target else found).latest("pk")


@pytest.fixture
def attacked(client_for, patients, django_capture_on_commit_callbacks):
    """A doctor found tampered data (level 4), and a doctor2 session read like a scraper
    according to the scorer in use (level 3). Reads are scored once they commit."""
    tamper(patients["patient1"])
    assert (
        client_for("doctor1")
        .get(reverse("clinic:patient_detail", args=[patients["patient1"].pk]))
        .status_code
        == 200
    )
    with (
        scoring_with(FixedScorer(0.9, kinds=("phi_read",))),
        django_capture_on_commit_callbacks(execute=True),
    ):
        client_for("doctor2").get(reverse("clinic:patient_detail", args=[patients["patient3"].pk]))
    assert User.objects.get(username="doctor2").is_suspended
    return patients


def test_the_dashboard_shows_incidents_responses_floor_health_and_keys_without_phi(
    client_for, attacked
):
    officer = client_for("admin")
    page = officer.get(DASHBOARD)
    assert page.status_code == 200
    html = page.content.decode()
    assert f'data-url="{TIMELINE}"' in html
    assert "vendor/chartjs/chart.umd.min.js" in html
    assert "js/risk-timeline.js" in html
    assert "Stored data fails its integrity check" in html
    assert "aead_failure_at_rest" in html
    assert 'id="floor-suite">AES-256-GCM<' in html
    assert "baseline rules" in html  # no trained model in this data directory
    assert f"patient:{attacked['patient1'].pk}" in html
    assert "suspend_account" in html
    # Every response in force says what it is for and who may lift it, and how.
    assert "encrypt everything at least this strongly while data may be exposed" in html
    assert "`carevault security lift-floor`" in html
    assert "`carevault security lift doctor2`" in html
    assert f'hx-get="{INCIDENTS}" hx-trigger="every 10s"' in html
    assert f'hx-get="{STATE}" hx-trigger="every 10s"' in html
    pages = [html, officer.get(INCIDENTS).content.decode(), officer.get(STATE).content.decode()]
    pages.append(officer.get(TIMELINE).content.decode())
    for text in pages:
        for secret in demo.demo_phi():
            assert secret not in text, secret
    # Reading the dashboard decrypted nothing.
    assert not AuditEntry.objects.filter(actor="admin", action__startswith="phi.").exists()
    context = page.context
    assert context["key_versions"]["rotated_24h"] == 1
    [rotated] = context["key_versions"]["rotated_patients"]
    assert (rotated.patient_id, rotated.versions) == (str(attacked["patient1"].pk), rotated.version)
    assert context["health"]["kind"] == "baseline"
    assert {r.action for r in context["in_force"]} == {"suspend_account", "raise_floor"}


def test_the_risk_timeline_is_json_per_minute_with_the_level_thresholds(client_for, attacked):
    answer = client_for("admin").get(TIMELINE, {"minutes": 30})
    assert answer.status_code == 200
    assert answer["Cache-Control"] == "no-store"
    data = answer.json()
    assert data["minutes"] == 30
    assert len(data["points"]) == 30
    assert max(p["max"] for p in data["points"]) == 1.0  # the tampered record
    assert sum(p["events"] for p in data["points"]) >= 2
    assert data["thresholds"] == {"step-up": 0.5, "contain": 0.7, "suspend": 0.85, "rotate": 0.95}
    assert data["open_incidents"] == 2


@pytest.mark.parametrize("username", ["doctor1", "patient1", "labtech1", None])
@pytest.mark.parametrize("url", [DASHBOARD, TIMELINE, INCIDENTS, STATE])
def test_the_security_pages_and_the_chart_data_are_for_officers_only(client_for, username, url):
    answer = client_for(username).get(url)
    if username is None:
        assert answer.status_code == 302
        assert answer["Location"].startswith(reverse("accounts:login"))
    else:
        assert answer.status_code == 403
        assert latest("access.denied").actor == username


def test_the_officer_acknowledges_an_incident_with_htmx_and_a_worse_event_reopens_it(
    client_for, patients, clock, settings, django_capture_on_commit_callbacks
):
    # doctor2 reads like a scraper, by the scorer in use: level 2, the session is ended.
    with (
        scoring_with(FixedScorer(0.75, kinds=("phi_read",))),
        django_capture_on_commit_callbacks(execute=True),
    ):
        client_for("doctor2").get(reverse("clinic:patient_detail", args=[patients["patient3"].pk]))
    incident = Incident.objects.get(subjects__key="account:doctor2")
    assert incident.level == 2
    url = reverse("officer:acknowledge_incident", args=[incident.pk])
    answer = client_for("admin").post(url, HTTP_HX_REQUEST="true")
    assert answer.status_code == 200
    assert "<html" not in answer.content.decode()
    assert f"Incident #{incident.pk} acknowledged." in answer.content.decode()
    incident.refresh_from_db()
    assert (incident.status, incident.acknowledged_by.username) == ("acknowledged", "admin")
    entry = latest("security.incident_acknowledged")
    assert (entry.actor, entry.target_id) == ("admin", str(incident.pk))
    again = client_for("admin").post(url, HTTP_HX_REQUEST="true")
    assert "acknowledged already" in again.content.decode()
    # Someone now guesses at doctor2's password: a guess alone changes nothing (its evidence
    # permits no response, however the scorer rates it) ...
    with scoring_with(FixedScorer(0.99, kinds=("login_failure",))):
        attempt(clock, "doctor2", WRONG, address="192.0.2.77")
        incident.refresh_from_db()
        assert (incident.status, incident.level) == ("acknowledged", 2)
        # ... until the account reaches the suspension limit: evidence that it is attacked.
        User.objects.filter(username="doctor2").update(
            consecutive_failures=settings.LOGIN_SUSPEND_AFTER - 1
        )
        attempt(clock, "doctor2", WRONG, address="192.0.2.77")
    incident.refresh_from_db()
    assert (incident.status, incident.level) == ("open", 3)


def test_the_officer_lifts_a_suspension_and_lowers_the_floor_and_both_are_audited(
    client_for, attacked
):
    officer = client_for("admin")
    suspension = response("suspend_account", "doctor2")
    answer = officer.post(
        reverse("officer:lift_response", args=[suspension.pk]),
        {"reason": "the doctor was reading for a clinic audit"},
        HTTP_HX_REQUEST="true",
    )
    assert answer.status_code == 200
    assert f"Response #{suspension.pk} (suspend_account doctor2) lifted." in answer.content.decode()
    assert not User.objects.get(username="doctor2").is_suspended
    suspension.refresh_from_db()
    assert (suspension.status, suspension.lifted_by.username, suspension.lift_reason) == (
        "lifted",
        "admin",
        "the doctor was reading for a clinic audit",
    )
    lifted = latest("security.response_lifted")
    assert (lifted.actor, lifted.details["effect"]) == ("admin", "suspension lifted")
    assert latest("account.unsuspended").actor == "admin"

    assert current_floor() is not None
    answer = officer.post(reverse("officer:lower_floor"), HTTP_HX_REQUEST="true")
    assert "Encryption floor lowered." in answer.content.decode()
    assert current_floor() is None
    lowered = latest("security.floor_lowered")
    assert (lowered.actor, lowered.details["suite"]) == ("admin", "AES-256-GCM")
    assert response("raise_floor").status == "lifted"

    # One-off responses and responses lifted already cannot be lifted.
    revoke = response("revoke_sessions")
    answer = officer.post(reverse("officer:lift_response", args=[revoke.pk]))
    assert answer.status_code == 302  # without htmx: back to the dashboard, with the notice
    again = officer.post(
        reverse("officer:lift_response", args=[suspension.pk]), HTTP_HX_REQUEST="true"
    )
    assert "lifted already" in again.content.decode()


def test_escalating_an_incident_takes_the_next_levels_actions_against_its_subjects(
    client_for, clock
):
    with scoring_with(FixedScorer(0.55, kinds=("login_failure",))):
        attempt(clock, "patient2", WRONG, address="192.0.2.31")
        attempt(clock, "patient2", WRONG, address="192.0.2.32")
    incident = Incident.objects.get()
    # Failed logins alone: observed, nobody acted on.
    assert (incident.level, incident.responses.count()) == (0, 0)
    officer = client_for("admin")
    url = reverse("officer:escalate_incident", args=[incident.pk])
    officer.post(url, HTTP_HX_REQUEST="true")  # step-up: nothing to step up when anonymous
    incident.refresh_from_db()
    assert (incident.level, incident.responses.count()) == (1, 0)
    # The officer decides, and is not capped by the evidence: an escalation is a person's call.
    officer.post(url, HTTP_HX_REQUEST="true")
    incident.refresh_from_db()
    assert incident.level == 2
    assert throttle.is_blocked("192.0.2.31")
    assert throttle.is_blocked("192.0.2.32")
    escalated = latest("security.incident_escalated")
    assert escalated.actor == "admin"
    assert escalated.details["actions"] == [
        "throttle_address:192.0.2.31",
        "throttle_address:192.0.2.32",
    ]
    officer.post(url, HTTP_HX_REQUEST="true")
    assert User.objects.get(username="patient2").is_suspended
    ordered = response("suspend_account", "patient2")
    assert (ordered.level, ordered.ordered_by.username) == (3, "admin")
    assert latest("security.response").actor == "admin"
    assert "escalated to suspend by admin" in ordered.explanation


def test_closing_an_incident_makes_the_next_event_open_a_new_one(client_for, attacked, patients):
    incident = Incident.objects.get(subjects__key=f"patient:{patients['patient1'].pk}")
    client_for("admin").post(reverse("officer:close_incident", args=[incident.pk]))
    incident.refresh_from_db()
    assert (incident.status, incident.closed_by.username) == ("closed", "admin")
    assert latest("security.incident_closed").actor == "admin"
    client_for("doctor1").get(reverse("clinic:patient_detail", args=[patients["patient1"].pk]))
    newer = Incident.objects.filter(subjects__key=f"patient:{patients['patient1'].pk}").latest("pk")
    assert newer.pk != incident.pk
    # The floor is still raised, and the key already rotated for the closed incident is
    # rotated again for the new one (a new incident, a new answer).
    assert newer.level == 4


def test_responses_undone_elsewhere_are_no_longer_shown_in_force(attacked):
    doctor2 = User.objects.get(username="doctor2")
    throttle.lift_suspension(doctor2, actor=doctor2, reason="unlocked with the second factor")
    holding = {r.action for r in dashboard.responses_in_force()}
    assert "suspend_account" not in holding
    assert response("suspend_account", "doctor2").status == "ended"


def test_unknown_incidents_and_responses_are_404s_for_the_officer(client_for):
    officer = client_for("admin")
    for url in (
        reverse("officer:acknowledge_incident", args=[987654]),
        reverse("officer:lift_response", args=[987654]),
    ):
        assert officer.post(url).status_code == 404
        assert latest("access.denied").actor == "admin"
