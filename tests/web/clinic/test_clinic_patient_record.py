"""The doctor's view of a patient's record: what it shows, what it writes, what it refuses."""

from __future__ import annotations

import pytest
from clinic_helpers import HTMX, entries, is_fragment, text
from django.db.models import F
from django.urls import reverse

from carevault.web import demo
from carevault.web.audit.log import Outcome
from carevault.web.clinic.models import ClinicalNote, Diagnosis, Prescription
from carevault.web.labs.models import LabRequest
from carevault.web.vault.context import SYSTEM_WRITE

pytestmark = pytest.mark.django_db


def detail(patient):
    return reverse("clinic:patient_detail", args=[patient.pk])


# -- reading ---------------------------------------------------------------------------------------


def test_a_doctor_opens_their_patients_record(client_for, patients):
    response = client_for("doctor1").get(detail(patients["patient1"]))
    page = text(response)
    assert response.status_code == 200
    assert "Alice Wonderland-Smith" in page
    assert "1984-03-14" in page
    assert "Type 2 diabetes mellitus without complications" in page
    assert "improved glucose control" in page
    assert "Metformin" in page
    assert "Signature valid" in page
    assert "HbA1c 6.9 %" in page
    assert "Lipid panel" in page  # a pending request
    assert "Routine follow-up" in page
    assert "TAMPERED" not in page


def test_opening_a_record_is_an_audited_read_naming_the_lab_sections(client_for, patients):
    client_for("doctor1").get(detail(patients["patient1"]))
    (read,) = entries("phi.read", actor="doctor1")
    assert read.patient_id == str(patients["patient1"].pk)
    assert read.outcome == Outcome.OK
    assert read.details["via"] == "care-team"
    assert {"lab_requests", "lab_results", "notes"} <= set(read.details["sections"])


def test_a_sensitive_diagnosis_carries_its_data_class_badge(client_for, patients):
    page = text(client_for("doctor1").get(detail(patients["patient2"])))
    assert "Moderate depressive episode" in page
    assert "Sensitive" in page


def test_a_lab_file_is_listed_with_its_signed_result(client_for, patients):
    page = text(client_for("doctor1").get(detail(patients["patient2"])))
    assert demo.DEMO_PDF_NAME in page
    assert "TSH 2.1 mIU/L" in page
    assert "Signature valid" in page


def test_a_doctor_cannot_open_another_doctors_patient(client_for, patients):
    patient3 = patients["patient3"]
    response = client_for("doctor1").get(detail(patient3))
    assert response.status_code == 404
    assert "Chiamaka" not in text(response)
    (denied,) = entries("access.denied", actor="doctor1")
    assert denied.outcome == Outcome.DENIED
    assert denied.target_id == str(patient3.pk)
    assert not entries("phi.read", actor="doctor1")


@pytest.mark.parametrize("username", ["patient1", "labtech1", "admin"])
def test_only_doctors_may_open_a_patient_record(client_for, patients, username):
    response = client_for(username).get(detail(patients["patient1"]))
    assert response.status_code == 403
    assert "Alice" not in text(response)
    assert entries("access.denied", actor=username)


# -- writing ---------------------------------------------------------------------------------------

WRITES = {
    "diagnoses": (
        "clinic:add_diagnosis",
        {"code": "K35.8", "description": "Acute appendicitis, other", "data_class": "ordinary"},
        Diagnosis,
        "description",
        "diagnosis.create",
    ),
    "notes": (
        "clinic:add_note",
        {"body": "Guarding in the right lower quadrant since this morning."},
        ClinicalNote,
        "body",
        "note.create",
    ),
    "prescriptions": (
        "clinic:prescribe",
        {"drug": "Amoxiclav Forte", "dose": "875 mg twice daily", "instructions": "Seven days."},
        Prescription,
        "drug",
        "prescription.create",
    ),
    "labs": (
        "clinic:request_lab_test",
        {"test": "C-reactive protein", "notes": "Urgent, before surgery"},
        LabRequest,
        "test",
        "lab.request",
    ),
}


def _only_new(model, patient, before):
    (row,) = model.objects.filter(patient=patient).exclude(pk__in=before)
    return row


def _ids(model, patient):
    return set(model.objects.filter(patient=patient).values_list("pk", flat=True))


@pytest.mark.parametrize("section", list(WRITES))
def test_a_doctor_adds_to_a_record_without_javascript(client_for, patients, section):
    url_name, data, model, column, action = WRITES[section]
    patient = patients["patient1"]
    client = client_for("doctor1")
    before = _ids(model, patient)
    response = client.post(reverse(url_name, args=[patient.pk]), data)
    assert response.status_code == 302
    assert response["Location"] == f"{detail(patient)}#section-{section}"
    row = _only_new(model, patient, before)
    assert row.unseal(column) == data[column]
    assert data[column].encode() not in bytes(getattr(row, f"{column}_enc"))
    assert data[column] in text(client.get(detail(patient)))
    assert entries(action, actor="doctor1", target_id=str(row.pk))


@pytest.mark.parametrize("section", list(WRITES))
def test_a_doctor_adds_to_a_record_with_htmx_and_gets_the_section_back(
    client_for, patients, section
):
    url_name, data, model, column, _ = WRITES[section]
    patient = patients["patient1"]
    before = _ids(model, patient)
    response = client_for("doctor1").post(reverse(url_name, args=[patient.pk]), data, headers=HTMX)
    assert response.status_code == 200
    assert is_fragment(response)
    assert f'id="section-{section}"' in text(response)
    assert data[column] in text(response)
    row = _only_new(model, patient, before)
    assert data[column].encode() not in bytes(getattr(row, f"{column}_enc"))


@pytest.mark.parametrize("htmx", [False, True], ids=["post", "htmx"])
@pytest.mark.parametrize("section", list(WRITES))
def test_an_invalid_form_shows_an_inline_error_and_writes_nothing(
    client_for, patients, section, htmx
):
    url_name, data, model, column, action = WRITES[section]
    patient = patients["patient1"]
    before = model.objects.count()
    audit_before = entries(action)
    assert audit_before  # the seed wrote some: the comparison below is not vacuous
    response = client_for("doctor1").post(
        reverse(url_name, args=[patient.pk]),
        {**data, column: "   "},
        headers=HTMX if htmx else {},
    )
    page = text(response)
    assert response.status_code == 400
    assert "This field is required" in page
    assert "is-invalid" in page
    assert is_fragment(response) == htmx
    assert model.objects.count() == before
    assert entries(action) == audit_before


def test_a_new_prescription_is_signed_and_shows_a_valid_signature(client_for, patients):
    patient = patients["patient1"]
    url = reverse("clinic:prescribe", args=[patient.pk])
    response = client_for("doctor1").post(url, WRITES["prescriptions"][1], headers=HTMX)
    assert text(response).count("Signature valid") == 2  # the seeded one and the new one
    assert entries("prescription.create", actor="doctor1")


def test_a_doctor_cannot_write_to_another_doctors_patient(client_for, patients):
    patient3 = patients["patient3"]
    url = reverse("clinic:add_note", args=[patient3.pk])
    response = client_for("doctor1").post(url, {"body": "Should never be stored."})
    assert response.status_code == 404
    assert not ClinicalNote.objects.filter(patient=patient3, author__username="doctor1").exists()
    assert entries("access.denied", actor="doctor1")


def test_a_patient_cannot_write_to_their_own_record(client_for, patients):
    patient1 = patients["patient1"]
    url = reverse("clinic:add_diagnosis", args=[patient1.pk])
    data = {"code": "Z00", "description": "Self-diagnosed", "data_class": "ordinary"}
    response = client_for("patient1").post(url, data)
    assert response.status_code == 403
    assert not Diagnosis.objects.filter(doctor__username="patient1").exists()


def test_the_write_endpoints_take_only_post(client_for, patients):
    url = reverse("clinic:add_note", args=[patients["patient1"].pk])
    assert client_for("doctor1").get(url).status_code == 405


# -- tampering -------------------------------------------------------------------------------------


def _prescription(patients, username="patient1"):
    return Prescription.objects.get(patient=patients[username])


def test_a_prescription_with_swapped_ciphertexts_shows_tampered(client_for, patients):
    p = _prescription(patients)
    Prescription.objects.filter(pk=p.pk).update(drug_enc=F("dose_enc"), dose_enc=F("drug_enc"))
    response = client_for("doctor1").get(detail(patients["patient1"]))
    page = text(response)
    assert response.status_code == 200
    assert "TAMPERED" in page
    assert "unreadable — tampered" in page
    assert "Signature valid" in page  # the lab result is untouched


def test_a_prescription_with_an_edited_signature_shows_tampered(client_for, patients):
    p = _prescription(patients)
    other = _prescription(patients, "patient2")  # same doctor, valid signature, other content
    Prescription.objects.filter(pk=p.pk).update(signature=other.signature)
    page = text(client_for("doctor1").get(detail(patients["patient1"])))
    assert "Metformin" in page  # the values still decrypt...
    assert "TAMPERED" in page  # ...but the doctor never signed them


def test_a_prescription_with_a_garbled_signature_shows_tampered(client_for, patients):
    Prescription.objects.filter(pk=_prescription(patients).pk).update(signature="not-a-signature")
    response = client_for("doctor1").get(detail(patients["patient1"]))
    assert response.status_code == 200
    assert "TAMPERED" in text(response)


def test_a_dose_re_encrypted_by_someone_with_the_keys_but_not_the_doctors_shows_tampered(
    client_for, patients
):
    p = _prescription(patients)
    p.seal(SYSTEM_WRITE, dose="5000 mg four times daily")
    p.save(update_fields=["dose_enc"])
    page = text(client_for("doctor1").get(detail(patients["patient1"])))
    assert "5000 mg four times daily" in page
    assert "TAMPERED" in page
