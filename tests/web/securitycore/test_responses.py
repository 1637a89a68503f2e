"""The security layer on the request path: audited actions become scored security events;
risky ones open incidents and are answered, level by level, with audited responses."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.test import Client
from django.urls import reverse
from security_helpers import (
    ATTACKER,
    WRONG,
    FixedScorer,
    attempt,
    scoring_with,
    use_fast_hashes,
)

from carevault.security.baseline import BaselineScorer
from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.clinic.models import Diagnosis, Prescription
from carevault.web.login import factor_state, throttle
from carevault.web.login.flow import LoginOutcome
from carevault.web.securitycore import scoring
from carevault.web.securitycore.models import (
    Incident,
    ResponseRecord,
    ResponseStatus,
    SecurityEvent,
)
from carevault.web.securitycore.runtime import runtime
from carevault.web.securitycore.state import current_floor
from carevault.web.vault import reencrypt, service

pytestmark = pytest.mark.django_db


def detail(patient):
    return reverse("clinic:patient_detail", args=[patient.pk])


def audited(action):
    return list(AuditEntry.objects.filter(action=action).order_by("seq"))


def responses(incident):
    return [(r.level, r.action, r.target) for r in incident.responses.order_by("pk")]


# -- ordinary use ----------------------------------------------------------------------------------


def test_an_ordinary_login_and_record_read_are_low_risk_events_with_no_response(
    client, packet_login, cast_password, patients, requests_commit
):
    assert packet_login(client, "doctor1", cast_password).json()["ok"]
    assert client.get(detail(patients["patient1"])).status_code == 200
    login = SecurityEvent.objects.get(kind="login_success", actor="doctor1")
    read = SecurityEvent.objects.filter(kind="phi_read", actor="doctor1").latest("pk")
    assert login.risk < 0.5
    assert read.risk < 0.5
    assert read.patients == [str(patients["patient1"].pk)]
    assert read.audit_seq == audited("phi.read")[-1].seq
    # Identifiers only: a keyed hash of the session, the same for both events.
    assert login.session
    assert login.session == read.session
    assert client.cookies["sessionid"].value not in login.session
    assert login.scorer.startswith("baseline")
    assert not Incident.objects.exists()
    assert not ResponseRecord.objects.exists()
    assert not audited("security.response")


# -- logins ----------------------------------------------------------------------------------------


def test_brute_force_through_the_login_flow_opens_an_incident_and_escalates_its_responses(
    settings, users, cast_password, clock
):
    use_fast_hashes(settings, cast_password)
    for _ in range(10):
        result, _ = attempt(clock, "patient3", WRONG)
        assert result.outcome is LoginOutcome.FAILED
    assert not Incident.objects.exists()  # ten wrong guesses alone: the throttle's business

    # The guesser gets in: level 2. The session just started is ended; the address is not
    # blocked (issue 12: one account's failures are no evidence against everyone behind it).
    result, request = attempt(clock, "patient3", cast_password)
    assert result.outcome is LoginOutcome.SUCCESS
    assert not request.user.is_authenticated
    assert not throttle.is_blocked(ATTACKER)
    incident = Incident.objects.get(subjects__key="account:patient3")
    assert incident.level == 2
    assert responses(incident) == [
        (2, "block_session", SecurityEvent.objects.get(kind="login_success").session),
    ]
    assert "failures_before_success=10" in incident.explanation
    ended = audited("security.response")[-1]
    assert (ended.outcome, ended.address, ended.details["action"]) == (
        "alert",
        ATTACKER,
        "block_session",
    )
    assert ended.details["explanation"].startswith("risk 0.75 (contain) on login_success")
    assert "evidence: suspicious_login" in ended.details["explanation"]
    assert "detectors: baseline 0.75" in ended.details["explanation"]
    assert not audited("auth.address_blocked")

    # It goes on from other addresses: once the account has failed as often as the throttle's
    # suspension limit within the window, level 3 suspends it and revokes all its sessions.
    epoch = users["patient3"].session_epoch
    for n in range(1, 12):
        result, _ = attempt(clock, "patient3", WRONG, address=f"203.0.113.{n}")
        assert result.outcome is LoginOutcome.FAILED
    incident.refresh_from_db()
    assert incident.level == 3
    assert responses(incident)[1:] == [
        (3, "suspend_account", "patient3"),
        (3, "revoke_sessions", "patient3"),
    ]
    assert throttle.blocked_addresses() == []
    patient = User.objects.get(username="patient3")
    assert patient.is_suspended
    assert patient.session_epoch == epoch + 1
    assert audited("session.revoke_all")[-1].target_id == str(patient.pk)
    explained = [e.details["explanation"] for e in audited("security.response")]
    assert all("features:" in text for text in explained)
    assert "account_failures=20" in explained[-1]
    # One incident for the whole attack, every response kept with its reason.
    assert Incident.objects.count() == 1
    assert ResponseRecord.objects.filter(status=ResponseStatus.FAILED).count() == 0


def test_a_login_contained_as_it_succeeds_answers_like_any_failed_login(
    settings, cast_password, clock, client, packet_login
):
    use_fast_hashes(settings, cast_password)
    for _ in range(10):
        clock.advance(throttle.check("patient3", "127.0.0.1").retry_after)
        failed = packet_login(client, "patient3", WRONG)
    clock.advance(throttle.check("patient3", "127.0.0.1").retry_after)
    contained = packet_login(client, "patient3", cast_password)
    # The guesser cannot tell that this password was the right one.
    assert (contained.status_code, contained.json()) == (failed.status_code, failed.json())
    assert contained.json() == {"ok": False, "error": "Login failed."}
    assert client.get(reverse("home")).status_code == 302
    assert not throttle.is_blocked("127.0.0.1")
    assert ResponseRecord.objects.filter(action="block_session").exists()


def test_a_user_who_mistyped_a_few_times_is_only_asked_for_a_second_factor(
    settings, cast_password, clock
):
    use_fast_hashes(settings, cast_password)
    home = "192.0.2.20"
    for _ in range(5):
        attempt(clock, "doctor2", WRONG, address=home)
    result, request = attempt(clock, "doctor2", cast_password, address=home)
    assert result.outcome is LoginOutcome.SUCCESS
    assert request.user.is_authenticated  # not locked out
    assert factor_state.step_up_demanded(request)
    [step_up] = ResponseRecord.objects.all()
    assert (step_up.level, step_up.action, step_up.status) == (1, "step_up", "done")
    assert (
        audited("session.step_up_demanded")[-1]
        .details["reason"]
        .startswith(f"security incident #{step_up.incident_id}, step-up")
    )
    assert not throttle.is_blocked(home)
    assert not User.objects.get(username="doctor2").is_suspended


def test_a_stolen_session_cookie_used_elsewhere_is_contained_without_locking_out_the_owner(
    client_for, settings, requests_commit
):
    owner = client_for("patient1")
    assert owner.get(reverse("clinic:patient_home")).status_code == 200
    thief = Client(REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="curl/8.5")
    thief.cookies[settings.SESSION_COOKIE_NAME] = owner.cookies[settings.SESSION_COOKIE_NAME].value
    assert thief.get(reverse("clinic:patient_home")).status_code == 302
    incident = Incident.objects.get(subjects__key="address:203.0.113.9")
    assert ("throttle_address", "203.0.113.9") in [(a, t) for _, a, t in responses(incident)]
    assert "session_clients=2" in incident.explanation
    assert throttle.is_blocked("203.0.113.9")
    assert not User.objects.get(username="patient1").is_suspended


# -- integrity failures on stored data -------------------------------------------------------------


def test_a_decryption_failure_on_stored_data_rotates_the_patients_key_and_raises_the_floor(
    client_for, patients
):
    patient = patients["patient1"]
    # The newest version (the primary, or an active one the policy added): a rotation adds one more.
    version = max(v.version for v in service.patient_keyring(patient.pk).versions())
    diagnosis = Diagnosis.objects.filter(patient=patient).first()
    # Swapped ciphertexts: each is genuine, but not for this column (AAD binds it).
    Diagnosis.objects.filter(pk=diagnosis.pk).update(
        code_enc=F("description_enc"), description_enc=F("code_enc")
    )
    doctor = client_for("doctor1")
    page = doctor.get(detail(patient))
    assert page.status_code == 200
    assert "tampered" in page.content.decode()

    # The top level, once: the floor raised, the touched patient's data key rotated.
    assert service.patient_keyring(patient.pk).primary.version == version + 1
    floor = current_floor()
    assert floor is not None
    assert floor.suite == "AES-256-GCM"
    # Stored data below the new floor is queued for re-encryption up to it.
    job = reencrypt.open_job()
    assert job is not None
    assert job.target_suite == "AES-256-GCM"
    incident = Incident.objects.get(subjects__key=f"patient:{patient.pk}")
    assert (incident.level, incident.rules) == (4, ["aead_failure_at_rest"])
    assert [(a, t) for _, a, t in responses(incident)] == [
        ("raise_floor", "AES-256-GCM"),
        ("rotate_keys", str(patient.pk)),
    ]
    assert SecurityEvent.objects.filter(incident=incident, kind="decryption_failure").count() == 2
    rotation = audited("security.response")[-1]
    assert rotation.patient_id == str(patient.pk)
    assert rotation.details["note"] == f"data key v{version + 1} (AES-256-GCM)"
    # Data written under the old version still reads; new data is sealed under the new one.
    assert patient.unseal("name") == "Alice Wonderland-Smith"
    assert doctor.get(detail(patient)).status_code == 200
    # Whoever found the damage did not cause it: the reader keeps their session and account.
    assert not User.objects.get(username="doctor1").is_suspended
    assert not ResponseRecord.objects.filter(action__in=["block_session", "suspend_account"])
    # A second look at the damage does not rotate again.
    assert service.patient_keyring(patient.pk).primary.version == version + 1


def test_a_stored_record_whose_signature_fails_is_tampering_too(client_for, patients):
    patient = patients["patient1"]
    version = max(v.version for v in service.patient_keyring(patient.pk).versions())
    other = Prescription.objects.get(patient=patients["patient2"])
    Prescription.objects.filter(patient=patient).update(signature=other.signature)
    assert client_for("doctor1").get(detail(patient)).status_code == 200
    failure = SecurityEvent.objects.get(kind="signature_failure")
    assert failure.rules == ["signature_failure_at_rest"]
    assert service.patient_keyring(patient.pk).primary.version == version + 1


# -- any scorer, and a scorer that fails -----------------------------------------------------------


def test_any_risk_scorer_drives_the_responses(client_for, patients, users, requests_commit):
    doctor = client_for("doctor1")
    with scoring_with(FixedScorer(0.9, kinds=("phi_read",))):
        response = doctor.get(detail(patients["patient1"]))
    # Level 3 during the read: the page is not delivered, the session is gone.
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))
    assert doctor.get(reverse("clinic:doctor_home")).status_code == 302
    incident = Incident.objects.get()
    assert incident.detectors == {"fixed": 0.9, "other": 0.45}
    assert "records_per_minute=42" in incident.explanation
    # A read implicates the reader, not everyone behind their address (issue 12).
    assert [(a, t) for _, a, t in responses(incident)] == [
        ("suspend_account", "doctor1"),
        ("revoke_sessions", "doctor1"),
    ]
    assert SecurityEvent.objects.filter(incident=incident).latest("pk").scorer == "fixed 1"


def test_a_failure_inside_the_security_layer_never_breaks_the_audited_action(
    client_for, patients, monkeypatch, requests_commit
):
    def broken(self, event):
        raise RuntimeError("the scorer fell over")

    monkeypatch.setattr(BaselineScorer, "assess", broken)
    doctor = client_for("doctor1")
    before = runtime().errors
    page = doctor.get(detail(patients["patient1"]))
    assert page.status_code == 200
    assert audited("phi.read")[-1].actor == "doctor1"
    # The event is kept, unscored, for a later batch; the failure shows on the dashboard.
    event = SecurityEvent.objects.filter(kind="phi_read").latest("pk")
    assert event.risk is None
    assert runtime().errors > before
    assert "the scorer fell over" in runtime().last_error
    monkeypatch.undo()
    assert scoring.score_pending() >= 1
    event.refresh_from_db()
    assert event.risk is not None


def test_a_database_error_inside_the_security_layer_is_rolled_back_alone(
    client_for, patients, monkeypatch
):
    def failing_store(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")
        raise AssertionError("not reached")  # pragma: no cover

    monkeypatch.setattr(scoring, "_store", failing_store)
    page = client_for("doctor1").get(detail(patients["patient1"]))
    assert page.status_code == 200
    assert audited("phi.read")[-1].actor == "doctor1"
    assert User.objects.filter(username="doctor1").exists()  # the connection still works
    # In a savepoint of its own, so the test's transaction stays usable on PostgreSQL too.
    with pytest.raises(DatabaseError), transaction.atomic():
        failing_store()


# -- host telemetry --------------------------------------------------------------------------------


def test_host_samples_are_taken_between_requests_and_scored(client_for, settings):
    settings.SECURITY_TELEMETRY_SECONDS = 1
    rt = runtime()
    assert client_for("doctor1").get(reverse("clinic:doctor_home")).status_code == 200
    assert rt.sampler is not None
    rt.sampler._last_at -= 5  # five seconds since the last sample
    client_for("doctor1").get(reverse("clinic:doctor_home"))
    host = SecurityEvent.objects.get(kind="host")
    assert host.risk is not None
    assert host.actor == host.address == ""
    assert set(host.payload) >= {"cpu", "net_mbps", "latency_ms"}
    assert rt.last_host is not None
    assert rt.last_host.requests >= 1
