"""Every write asks the adaptive encryption policy (issue 6): the suite it picks seals the
record's values and files, the floors hold, the session's risk and the raised system floor
count, and each record's decision is logged with its reason. The role and the risk travel in
the write's explicit context (issue 15), built by the action from its acting user and client:
a write made outside any session is made as the system."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone
from vault_policy_helpers import FakeRiskSource, policy_proposing, risk_source_registered

from carevault.crypto import KeyState, Suite, parse_header
from carevault.security.policy import STRONGEST
from carevault.web.clientinfo import ClientInfo, session_hash
from carevault.web.clinic import actions as clinic
from carevault.web.clinic.models import ClinicalNote, Diagnosis
from carevault.web.labs import actions as labs
from carevault.web.labs import storage
from carevault.web.securitycore import state
from carevault.web.securitycore.models import SecurityEvent
from carevault.web.vault import service
from carevault.web.vault.models import EncryptionDecision, PatientKey

PDF = b"%PDF-1.4\n" + b"lab report " * 400 + b"\n%%EOF\n"


def suite_of(sealed: bytes | memoryview) -> Suite:
    return parse_header(bytes(sealed)).suite


def decision_for(record: object, table: str | None = None) -> EncryptionDecision:
    return EncryptionDecision.objects.get(
        table=table or record._meta.db_table,  # type: ignore[attr-defined]
        row=str(record.pk),  # type: ignore[attr-defined]
    )


def doctor_of(patient):
    return patient.care_team.get().doctor


def test_without_a_trained_policy_every_write_gets_the_strongest_suite(patients):
    patient = patients["patient1"]
    note = clinic.do_add_note(doctor_of(patient), patient, body="Feels better today.")
    assert suite_of(note.body_enc) is STRONGEST
    logged = decision_for(note)
    assert (logged.suite, logged.source) == (STRONGEST.label, "fallback")
    assert "no trained policy" in logged.reason
    assert note.unseal("body") == "Feels better today."


def test_an_ordinary_write_takes_the_cheaper_suite_the_model_proposes(patients, monkeypatch):
    patient = patients["patient1"]
    with policy_proposing(monkeypatch, Suite.AES_128_GCM):
        note = clinic.do_add_note(doctor_of(patient), patient, body="Routine follow-up.")
    assert suite_of(note.body_enc) is Suite.AES_128_GCM
    logged = decision_for(note)
    assert logged.source == "model"
    assert logged.reason.startswith("AES-128-GCM because: ordinary data, risk 0.00")
    assert logged.inputs["role"] == "system"  # no request: an action called directly
    assert logged.inputs["payload_bytes"] == len(b"Routine follow-up.")


@pytest.mark.parametrize(
    ("code", "data_class"),
    [("F32.1", "ordinary"), ("I10", "sensitive"), ("B20", "ordinary")],
)
def test_a_sensitive_diagnosis_is_never_sealed_below_aes_256(
    patients, monkeypatch, code, data_class
):
    patient = patients["patient2"]
    with policy_proposing(monkeypatch, Suite.AES_128_GCM):
        diagnosis = clinic.do_add_diagnosis(
            doctor_of(patient), patient, code=code, description="x", data_class=data_class
        )
    assert suite_of(diagnosis.code_enc) is Suite.AES_256_GCM
    assert suite_of(diagnosis.description_enc) is Suite.AES_256_GCM
    logged = decision_for(diagnosis)
    assert logged.source == "floor"
    assert "sensitive data" in logged.reason
    assert "raised to the floor" in logged.reason


def test_a_raised_system_floor_lifts_every_write_to_it(patients, monkeypatch):
    patient = patients["patient1"]
    state.raise_floor("HYBRID-X25519-AES-256-GCM", seconds=600, reason="incident")
    with policy_proposing(monkeypatch, Suite.AES_128_GCM):
        note = clinic.do_add_note(doctor_of(patient), patient, body="During the incident.")
    assert suite_of(note.body_enc) is Suite.HYBRID_X25519_AES_256_GCM
    assert "system floor HYBRID-X25519-AES-256-GCM" in decision_for(note).reason


def test_a_risky_sessions_writes_are_sealed_more_strongly(client_for, patients, monkeypatch):
    patient = patients["patient1"]
    client = client_for("doctor1")
    SecurityEvent.objects.create(
        at=timezone.now(),
        kind="request",
        session=session_hash(client.session.session_key),
        risk=0.85,
    )
    with policy_proposing(monkeypatch, Suite.AES_128_GCM):
        url = reverse("clinic:add_note", args=[patient.pk])
        response = client.post(url, {"body": "Written in a risky session."})
    assert response.status_code in (200, 302)
    note = ClinicalNote.objects.filter(patient=patient).order_by("-created_at").first()
    assert suite_of(note.body_enc).level == 4  # ordinary data needs level 4 from risk 0.8
    logged = decision_for(note)
    assert logged.inputs["role"] == "doctor"
    assert logged.inputs["risk"] == pytest.approx(0.85)
    assert "risk 0.85" in logged.reason


def test_a_write_with_no_request_uses_the_system_context(patients, monkeypatch):
    # A command, a background job or the demo seed calls the action with no request: whatever
    # the security layer would say of a session, there is none to ask about.
    patient = patients["patient1"]
    source = FakeRiskSource(risk=0.95)
    with policy_proposing(monkeypatch, Suite.AES_128_GCM), risk_source_registered(source):
        note = clinic.do_add_note(doctor_of(patient), patient, body="Written by a command.")
    assert suite_of(note.body_enc) is Suite.AES_128_GCM
    logged = decision_for(note)
    assert (logged.inputs["role"], logged.inputs["risk"]) == ("system", 0.0)
    assert source.asked == []


def test_a_self_registration_is_written_as_the_system_with_its_sessions_risk(
    db, cast_password, monkeypatch
):
    # Nobody is signed in while registering: the new patient's record is the system's write,
    # in the registering client's session (whose risk counts).
    registering = ClientInfo(
        address="203.0.113.7",
        user_agent="Mozilla/5.0 (reception desk)",
        session=session_hash("the-registering-clients-session"),
    )
    source = FakeRiskSource(risk=0.3)
    with policy_proposing(monkeypatch, Suite.AES_128_GCM), risk_source_registered(source):
        user = clinic.do_register_patient(
            username="newcomer",
            password=cast_password,
            name="New Comer",
            birth_date=dt.date(1990, 1, 1),
            client=registering,
        )
    logged = decision_for(user.patient)
    assert (logged.inputs["role"], logged.inputs["risk"]) == ("system", pytest.approx(0.3))
    assert source.asked == [registering.session]


def test_a_sensitive_lab_tests_file_and_values_are_sealed_at_least_under_aes_256(
    patients, users, monkeypatch
):
    patient = patients["patient1"]
    with policy_proposing(monkeypatch, Suite.AES_128_GCM):
        request = labs.do_request_lab_test(doctor_of(patient), patient, test="HIV-1/2 antibody")
        result = labs.do_submit_lab_result(
            users["labtech1"],
            request,
            values="non-reactive",
            uploads=[labs.upload_from_bytes("report.pdf", "application/pdf", PDF)],
        )
    assert suite_of(request.test_enc) is Suite.AES_256_GCM
    assert suite_of(result.values_enc) is Suite.AES_256_GCM
    lab_file = result.files.get()
    assert storage.sealing_suite(lab_file.storage_name) is Suite.AES_256_GCM
    content = decision_for(lab_file, storage.CONTENT_TABLE)
    assert content.inputs["payload_bytes"] == len(PDF)
    assert b"".join(storage.open_decrypted(patient.pk, lab_file.pk, lab_file.storage_name)) == PDF


def test_an_ordinary_lab_file_follows_the_model(patients, users, monkeypatch):
    patient = patients["patient1"]
    with policy_proposing(monkeypatch, Suite.AES_192_GCM):
        request = labs.do_request_lab_test(doctor_of(patient), patient, test="Full blood count")
        result = labs.do_submit_lab_result(
            users["labtech1"],
            request,
            values="normal",
            uploads=[labs.upload_from_bytes("fbc.pdf", "application/pdf", PDF)],
        )
    assert storage.sealing_suite(result.files.get().storage_name) is Suite.AES_192_GCM


def test_a_suite_is_added_to_the_patients_keyring_once_and_saved(patients):
    patient = patients["patient3"]
    before = PatientKey.objects.get(patient_id=patient.pk).wrapped
    ring = service.keyring_for(patient.pk, Suite.RSA_3072_OAEP_AES_256_GCM)
    assert ring.can_encrypt(Suite.RSA_3072_OAEP_AES_256_GCM)
    assert bytes(PatientKey.objects.get(patient_id=patient.pk).wrapped) != bytes(before)
    service.reset_caches()
    stored = service.patient_keyring(patient.pk)
    active = [v for v in stored.versions() if v.state is KeyState.ACTIVE]
    assert [v.suite for v in active if v.suite is Suite.RSA_3072_OAEP_AES_256_GCM] == [
        Suite.RSA_3072_OAEP_AES_256_GCM
    ]
    versions = len(stored.versions())
    service.keyring_for(patient.pk, Suite.RSA_3072_OAEP_AES_256_GCM)
    service.reset_caches()
    assert len(service.patient_keyring(patient.pk).versions()) == versions


def test_a_decision_log_holds_no_patient_data(patients, monkeypatch):
    patient = patients["patient1"]
    with policy_proposing(monkeypatch, Suite.AES_128_GCM):
        diagnosis = clinic.do_add_diagnosis(
            doctor_of(patient), patient, code="F41.1", description="Generalised anxiety"
        )
    logged = decision_for(diagnosis)
    text = f"{logged.reason} {logged.inputs}"
    assert "anxiety" not in text.lower()
    assert "F41" not in text
    assert isinstance(Diagnosis.objects.get(pk=diagnosis.pk).code_enc, bytes | memoryview)
