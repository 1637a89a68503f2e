"""Attacks seen at the HTTP layer open incidents whatever scorer is loaded and however many
workers share them: the rules over shared counts (rules.SHARED_RULES) read the stored events
and the login throttle, and the responses stay capped by the evidence (issue 12)."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.urls import reverse
from security_helpers import (
    ATTACKER,
    WRONG,
    FixedScorer,
    login_request,
    scoring_with,
    use_fast_hashes,
)

from carevault.security import rules
from carevault.security.events import Event, EventKind
from carevault.web.accounts.models import User
from carevault.web.audit.log import Outcome, record
from carevault.web.audit.models import AuditEntry
from carevault.web.login import flow, throttle
from carevault.web.login.flow import LoginOutcome
from carevault.web.securitycore.models import Incident, ResponseRecord, SecurityEvent
from carevault.web.securitycore.scoring import observe_event

pytestmark = pytest.mark.django_db

# A scorer that sees nothing: what a model trained on other traffic may say.
BLIND = FixedScorer(0.0)


def guess(username: str, password: str = WRONG, address: str = ATTACKER) -> LoginOutcome:
    return flow.attempt_password_login(login_request(address), username, password).outcome


def test_a_brute_force_that_ignores_the_pause_opens_an_incident_that_blocks_nobody(
    settings, users, cast_password, clock
):
    use_fast_hashes(settings, cast_password)
    with scoring_with(BLIND):
        outcomes = [guess("doctor2") for _ in range(settings.LOGIN_BACKOFF_AFTER + 1)]
        assert LoginOutcome.PAUSED in outcomes
        assert not Incident.objects.exists()
        while throttle.refused_count(ATTACKER) < rules.REFUSED_PER_WINDOW:
            assert guess("doctor2") is LoginOutcome.PAUSED
    [incident] = Incident.objects.all()
    assert incident.level == 0  # observe: refused attempts permit no response
    assert "refused_run" in incident.rules
    assert set(incident.subjects.values_list("key", flat=True)) == {f"address:{ATTACKER}"}
    [run] = SecurityEvent.objects.filter(incident=incident)
    assert (run.kind, run.outcome, run.payload["refused"]) == (
        "login_failure",
        "denied",
        rules.REFUSED_PER_WINDOW,
    )
    assert not ResponseRecord.objects.exists()
    assert not throttle.is_blocked(ATTACKER)
    assert not User.objects.get(username="doctor2").is_suspended


def test_a_long_run_of_refusals_is_one_event_however_long_it_goes_on(
    settings, users, cast_password, clock
):
    use_fast_hashes(settings, cast_password)
    throttle.block_address(ATTACKER, "a test's block")
    before = SecurityEvent.objects.count()
    with scoring_with(BLIND):
        for _ in range(5 * rules.REFUSED_PER_WINDOW):
            assert guess("doctor2") is LoginOutcome.PAUSED
    assert SecurityEvent.objects.count() == before + 1
    assert Incident.objects.get().event_count == 1


def test_names_sprayed_from_one_address_open_an_incident_before_the_throttle_blocks_it(
    settings, users, cast_password, clock
):
    use_fast_hashes(settings, cast_password)
    with scoring_with(BLIND):
        for n in range(rules.ADDRESS_FAILURES_PER_HOUR - 1):
            assert guess(f"nobody{n}") is LoginOutcome.FAILED
        assert not Incident.objects.exists()
        guess("nobody-else")
        incident = Incident.objects.get(subjects__key=f"address:{ATTACKER}")
        assert "address_spray" in incident.rules
        for n in range(settings.LOGIN_ADDRESS_UNKNOWN_PER_MINUTE):
            guess(f"someone{n}")
    assert throttle.is_blocked(ATTACKER)
    # The throttle blocked the address on its own evidence; the incident did nothing more.
    assert not ResponseRecord.objects.exists()
    assert Incident.objects.count() == 1


def test_forged_login_packets_open_an_incident_at_their_tenth(client):
    packet = reverse("accounts:login_packet")
    with scoring_with(BLIND):
        for _ in range(rules.REJECTED_PACKETS_PER_10_MINUTES - 1):
            client.post(packet, b"{}", content_type="application/json")
        assert not Incident.objects.exists()
        client.post(packet, b"{}", content_type="application/json")
    incident = Incident.objects.get(subjects__key="address:127.0.0.1")
    assert "packet_run" in incident.rules
    assert not ResponseRecord.objects.exists()


def test_an_account_at_the_throttles_suspension_limit_opens_an_incident(
    settings, users, cast_password, clock
):
    use_fast_hashes(settings, cast_password)
    with scoring_with(BLIND):
        for n in range(settings.LOGIN_SUSPEND_AFTER):
            clock.advance(throttle.check("patient3", f"203.0.113.{n}").retry_after)
            guess("patient3", address=f"203.0.113.{n}")
    assert User.objects.get(username="patient3").is_suspended
    incident = Incident.objects.get(subjects__key="account:patient3")
    assert "throttle_limit" in incident.rules


def test_a_sweep_over_other_patients_records_opens_an_incident_at_its_tenth_denial(
    client_for, patients
):
    thief = client_for("patient1")
    others = [p for name, p in patients.items() if name != "patient1"]
    with scoring_with(BLIND):
        for n in range(rules.DENIALS_PER_10_MINUTES - 1):
            target = others[n % len(others)]
            thief.get(reverse("clinic:patient_detail", args=[target.pk]))
        assert not Incident.objects.exists()
        thief.get(reverse("clinic:patient_detail", args=[others[0].pk]))
    incident = Incident.objects.get(subjects__key="account:patient1")
    assert "denial_run" in incident.rules
    assert SecurityEvent.objects.filter(kind="access_denied").count() == (
        rules.DENIALS_PER_10_MINUTES
    )


def test_a_ward_computers_typos_and_a_retry_while_paused_open_nothing(
    settings, users, cast_password, clock
):
    use_fast_hashes(settings, cast_password)
    ward = "10.77.0.5"
    with scoring_with(BLIND):
        for name in ("doctor1", "doctor2", "labtech1", "patient1"):
            assert guess(name, address=ward) is LoginOutcome.FAILED
            assert guess(name, cast_password, address=ward) is LoginOutcome.SUCCESS
        for _ in range(settings.LOGIN_BACKOFF_AFTER):
            guess("doctor1", address=ward)
        for _ in range(3):  # told to wait, they try again a few times
            assert guess("doctor1", cast_password, address=ward) is LoginOutcome.PAUSED
    assert not Incident.objects.exists()
    assert not throttle.is_blocked(ward)


def test_a_signed_in_users_forged_forms_are_denials_and_a_run_of_them_opens_an_incident(
    client_for, patients
):
    forger = client_for("doctor1")
    forger.handler.enforce_csrf_checks = True  # as a browser's request from another site
    form = reverse("clinic:add_note", args=[patients["patient1"].pk])
    with scoring_with(BLIND):
        answers = [
            forger.post(form, {"text": "x"}, HTTP_ORIGIN="https://evil.example").status_code
            for _ in range(rules.DENIALS_PER_10_MINUTES)
        ]
    # Refused each time; the run's last one also ends the session (probing permits it).
    assert answers == [403] * (rules.DENIALS_PER_10_MINUTES - 1) + [302]
    denials = AuditEntry.objects.filter(action="access.denied", details__reason="csrf")
    assert denials.count() == rules.DENIALS_PER_10_MINUTES
    incident = Incident.objects.get(subjects__key="account:doctor1")
    assert "denial_run" in incident.rules


def test_an_anonymous_forged_form_is_refused_without_an_audit_row(db):
    before = AuditEntry.objects.count()
    answer = Client(enforce_csrf_checks=True).post(reverse("accounts:logout"), {})
    assert answer.status_code == 403
    assert AuditEntry.objects.count() == before


def test_a_run_of_refused_uploads_by_one_account_opens_an_incident_at_its_tenth(users):
    def refused_upload() -> Event:
        return Event(
            at=time.time(),
            kind=EventKind.UPLOAD,
            actor="labtech1",
            role="labtech",
            address="10.77.0.9",
            outcome="failed",
            upload_bytes=2048,
            declared_type="application/pdf",
            sniffed_type="image/png",
        )

    with scoring_with(BLIND):
        for _ in range(rules.REJECTED_UPLOADS_PER_10_MINUTES - 1):
            observe_event(refused_upload())
        assert not Incident.objects.exists()
        observe_event(refused_upload())
    incident = Incident.objects.get(subjects__key="account:labtech1")
    assert "upload_run" in incident.rules


def test_a_burst_of_break_the_glass_grants_by_one_doctor_opens_an_incident(
    users, patients, django_capture_on_commit_callbacks
):
    doctor = users["doctor2"]
    patient = patients["patient1"]

    def grant() -> None:
        # A grant is a PHI write: observed once it commits.
        with django_capture_on_commit_callbacks(execute=True):
            record("breakglass.open", actor=doctor, outcome=Outcome.ALERT, patient_id=patient.pk)

    with scoring_with(BLIND):
        for _ in range(rules.BREAKGLASS_PER_HOUR - 1):
            grant()
        assert not Incident.objects.exists()
        grant()
    incident = Incident.objects.get(subjects__key="account:doctor2")
    assert "breakglass_burst" in incident.rules
    # No live session to step up here: watched, nobody locked out.
    assert not User.objects.get(username="doctor2").is_suspended
