"""The access matrix: every actor against every URL of the application.

The URL list is generated from the URL configuration, and every named URL must have a row in
``POLICY``: a new view without a policy fails this test, so no view can escape it. Each cell
says what the actor must get when asking for *patient2's* objects (patient2 is treated by
doctor1): ``ok`` (the request reaches the view: 2xx, a redirect that is not the login page,
or 400/409 for an empty form), ``login`` (anonymous: sent to the login page, or 401 from the
API), ``forbidden`` (403: the role may never do this) or ``hidden`` (404: the object is not
theirs, and its existence is not confirmed). Every 403 and 404 must also leave an
``access.denied`` entry in the audit log.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from carevault.web.audit.models import AuditEntry
from carevault.web.clinic.models import Appointment, BreakGlassGrant
from carevault.web.diagnosis.models import ClientCutOff
from carevault.web.jobs.models import JobRun
from carevault.web.labs.models import LabFile, LabRequest
from carevault.web.securitycore.models import Incident, ResponseRecord, ResponseStatus
from carevault.web.vault.context import SYSTEM_WRITE

pytestmark = pytest.mark.django_db

ACTORS = {
    "anonymous": None,
    "owner": "patient2",
    "other_patient": "patient1",
    "doctor": "doctor1",
    "other_doctor": "doctor2",
    "labtech": "labtech1",
    "admin": "admin",
}

OK, LOGIN, FORBIDDEN, HIDDEN = "ok", "login", "forbidden", "hidden"


def row(default: str, **cells: str) -> dict[str, str]:
    return {actor: cells.get(actor, default) for actor in ACTORS} | (
        {"anonymous": cells.get("anonymous", LOGIN)}
    )


ANYONE = row(OK, anonymous=OK)
SIGNED_IN = row(OK)
DOCTORS = row(FORBIDDEN, doctor=OK, other_doctor=OK)
TREATING_DOCTOR = row(FORBIDDEN, doctor=OK, other_doctor=HIDDEN)
PATIENTS = row(FORBIDDEN, owner=OK, other_patient=OK)
OWNING_PATIENT = row(FORBIDDEN, owner=OK, other_patient=HIDDEN)
LAB = row(FORBIDDEN, labtech=OK)
OFFICER = row(FORBIDDEN, admin=OK)

# (method, policy) for every named URL. Object arguments always name patient2's objects.
POLICY: dict[str, tuple[str, dict[str, str]]] = {
    "home": ("GET", SIGNED_IN),
    "healthz": ("GET", ANYONE),
    "accounts:login": ("GET", ANYONE),
    # Encrypted login packets: anyone may ask for a challenge and post a packet (an empty body
    # is a malformed packet: 400, the one answer to every failed login).
    "accounts:login_challenge": ("GET", ANYONE),
    "accounts:login_packet": ("POST", ANYONE),
    # Logging out (or trying to, when not logged in) ends on the login page.
    "accounts:logout": ("POST", row(LOGIN)),
    "accounts:register": ("GET", ANYONE),
    # Account security (second factor, sessions, recovery). Signed-in pages send anonymous
    # visitors to the login page. The login's second step and step-up have nothing to ask of a
    # visitor without a pending login (the login page) nor of a session that owes nothing (a
    # redirect home). "Log out everywhere" ends every session: like logging out, it ends on the
    # login page. Password reset is for people who cannot log in: anyone, and the same answer
    # for everyone (an invalid link is a page saying so).
    "account_security:overview": ("GET", SIGNED_IN),
    "account_security:logout_everywhere": ("POST", row(LOGIN)),
    "account_security:totp_setup": ("GET", SIGNED_IN),
    "account_security:totp_disable": ("POST", SIGNED_IN),
    "account_security:recovery_codes": ("POST", SIGNED_IN),
    "account_security:verify": ("GET", SIGNED_IN),
    "account_security:step_up": ("GET", SIGNED_IN),
    "account_security:password_reset": ("GET", ANYONE),
    "account_security:password_reset_done": ("GET", ANYONE),
    "account_security:password_reset_confirm": ("GET", ANYONE),
    "clinic:doctor_home": ("GET", DOCTORS),
    "clinic:decide_appointment": ("POST", TREATING_DOCTOR),
    "clinic:patient_detail": ("GET", TREATING_DOCTOR),
    # A slice of one section of the record ("show more"): the record page's rules.
    "clinic:record_section": ("GET", TREATING_DOCTOR),
    # Emergency access is exactly for a doctor who is not treating the patient.
    "clinic:break_glass": ("POST", DOCTORS),
    "clinic:add_diagnosis": ("POST", TREATING_DOCTOR),
    "clinic:add_note": ("POST", TREATING_DOCTOR),
    "clinic:prescribe": ("POST", TREATING_DOCTOR),
    "clinic:request_lab_test": ("POST", TREATING_DOCTOR),
    "clinic:patient_home": ("GET", PATIENTS),
    "clinic:own_section": ("GET", PATIENTS),
    "clinic:patient_history": ("GET", PATIENTS),
    "clinic:book_appointment": ("POST", PATIENTS),
    "clinic:cancel_appointment": ("POST", OWNING_PATIENT),
    "labs:queue": ("GET", LAB),
    "labs:request_detail": ("GET", LAB),
    # The file of a lab report: its patient, their doctor, and the lab that produced it.
    "labs:file": (
        "GET",
        row(HIDDEN, owner=OK, doctor=OK, labtech=OK),
    ),
    "officer:dashboard": ("GET", OFFICER),
    "officer:audit_table": ("GET", OFFICER),
    "officer:revoke_break_glass": ("POST", OFFICER),
    "officer:lift_suspension": ("POST", OFFICER),
    "officer:unblock_address": ("POST", OFFICER),
    "officer:lift_cut_off": ("POST", OFFICER),
    # The security layer (issue 5): incidents, responses, the floor, the risk timeline (JSON).
    "officer:incidents": ("GET", OFFICER),
    "officer:acknowledge_incident": ("POST", OFFICER),
    "officer:escalate_incident": ("POST", OFFICER),
    "officer:close_incident": ("POST", OFFICER),
    "officer:security_state": ("GET", OFFICER),
    "officer:lift_response": ("POST", OFFICER),
    "officer:lower_floor": ("POST", OFFICER),
    "officer:risk_timeline": ("GET", OFFICER),
    "officer:encryption": ("GET", OFFICER),
    "officer:reencryption_jobs": ("GET", OFFICER),
    "officer:start_reencryption": ("POST", OFFICER),
    "officer:jobs": ("GET", OFFICER),
    "officer:jobs_table": ("GET", OFFICER),
    "officer:queue_job": ("POST", OFFICER),
    "officer:retry_job": ("POST", OFFICER),
    "officer:users": ("GET", OFFICER),
    "officer:user_create": ("GET", OFFICER),
    "officer:user_edit": ("GET", OFFICER),
    "api:me": ("GET", SIGNED_IN),
    "api:patients": ("GET", DOCTORS),
    "api:patient_record": (
        "GET",
        row(FORBIDDEN, owner=OK, other_patient=HIDDEN, doctor=OK, other_doctor=HIDDEN),
    ),
    "api:patient_notes": ("POST", TREATING_DOCTOR),
    "api:patient_diagnoses": ("POST", TREATING_DOCTOR),
    "api:diagnosis_homomorphic": ("POST", DOCTORS),
    "diagnosis:run": ("GET", TREATING_DOCTOR),
    "api:lab_queue": ("GET", LAB),
    "api:not_found": ("GET", row(HIDDEN, anonymous=HIDDEN)),
}


def named_urls() -> list[tuple[str, URLPattern]]:
    found: list[tuple[str, URLPattern]] = []

    def walk(patterns: list[Any], namespace: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = pattern.namespace or namespace
                walk(pattern.url_patterns, inner)
            elif isinstance(pattern, URLPattern):
                assert pattern.name, f"unnamed URL {pattern.pattern}: name it and add a policy"
                found.append(
                    (f"{namespace}:{pattern.name}" if namespace else pattern.name, pattern)
                )

    walk(get_resolver().url_patterns, "")
    return found


@pytest.fixture
def subject(users, patients) -> dict[str, Any]:
    """Arguments for every URL parameter, all belonging to patient2."""
    patient = patients["patient2"]
    grant = BreakGlassGrant(
        doctor=users["doctor2"],
        patient=patient,
        expires_at=timezone.now() - dt.timedelta(minutes=1),
    )
    grant.seal(SYSTEM_WRITE, reason="expired grant, only here to be revoked by the officer")
    grant.save()
    now = timezone.now()
    incident = Incident.objects.create(opened_at=now, updated_at=now, title="an incident", level=1)
    response = ResponseRecord.objects.create(
        incident=incident,
        at=now,
        action="throttle_address",
        level=2,
        target="192.0.2.99",
        explanation="only here to be lifted by the officer",
        status=ResponseStatus.IN_FORCE,
        reversible=True,
    )
    return {
        "patient_id": patient.pk,
        "appointment_id": Appointment.objects.filter(patient=patient).first().pk,
        "request_id": LabRequest.objects.filter(patient=patient).first().pk,
        "file_id": LabFile.objects.filter(patient=patient).first().pk,
        "grant_id": grant.pk,
        "incident_id": incident.pk,
        "response_id": response.pk,
        "cut_off_id": ClientCutOff.objects.create(
            client="api:0", user=users["doctor1"], reason="only here to be lifted"
        ).pk,
        "user_id": users["patient2"].pk,
        # A failed background job, only here to be retried by the officer.
        "run_id": JobRun.objects.create(kind="audit.seal", state="failed").pk,
        "path": "no/such/endpoint",
        "section": "notes",
        # A reset link for patient2 with a token that is not valid.
        "uidb64": urlsafe_base64_encode(force_bytes(users["patient2"].pk)),
        "token": "set-password",
    }


def test_every_named_url_has_an_access_policy():
    missing = sorted(name for name, _ in named_urls() if name not in POLICY)
    stale = sorted(set(POLICY) - {name for name, _ in named_urls()})
    assert not missing, f"views without an access policy: {missing}"
    assert not stale, f"policies for URLs that no longer exist: {stale}"


def outcome(response: Any) -> str:
    status = response.status_code
    location = response.get("Location", "")
    if status == 401 or (status == 302 and "/accounts/login/" in location):
        return LOGIN
    if status == 403:
        return FORBIDDEN
    if status == 404:
        return HIDDEN
    if status < 400 or status in (400, 409):
        return OK
    return f"unexpected {status}"


def cases() -> list[tuple[str, str]]:
    return [(name, actor) for name in sorted(POLICY) for actor in ACTORS]


@pytest.mark.parametrize(("url_name", "actor"), cases())
def test_access_matrix(url_name, actor, subject, client_for):
    method, policy = POLICY[url_name]
    pattern = dict(named_urls())[url_name]
    kwargs = {key: subject[key] for key in pattern.pattern.converters}
    if url_name == "api:not_found":
        kwargs = {"path": subject["path"]}
    url = reverse(url_name, kwargs=kwargs)
    client = client_for(ACTORS[actor])
    before = AuditEntry.objects.filter(action="access.denied").count()
    response = client.get(url) if method == "GET" else client.post(url, {})
    expected = policy[actor]
    assert outcome(response) == expected, f"{actor} {method} {url}: {response.status_code}"
    if expected in (FORBIDDEN, HIDDEN) and url_name != "api:not_found":
        after = AuditEntry.objects.filter(action="access.denied").count()
        assert after > before, f"{actor} was refused {url} without an audit entry"
