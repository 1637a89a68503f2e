"""The JSON API: session auth, JSON errors, the web UI's object-level rules, audited denials."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from carevault.web import demo
from carevault.web.audit.models import AuditEntry
from carevault.web.clinic import actions as clinic
from carevault.web.clinic.models import ClinicalNote, Prescription

pytestmark = pytest.mark.django_db

ME = reverse("api:me")
PATIENTS = reverse("api:patients")
LAB_QUEUE = reverse("api:lab_queue")
SPEC = {spec.username: spec for spec in demo.PATIENTS}


def record_url(patient):
    return reverse("api:patient_record", args=[patient.pk])


def notes_url(patient):
    return reverse("api:patient_notes", args=[patient.pk])


def post_json(client, url, data):
    body = data if isinstance(data, (str, bytes)) else json.dumps(data)
    return client.post(url, body, content_type="application/json")


def latest(action):
    return AuditEntry.objects.filter(action=action).order_by("-seq").first()


def assert_error(response, status, code):
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


# -- authentication and errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", [ME, PATIENTS, LAB_QUEUE, "/api/v1/patients/00000000-0000-0000-0000-000000000001"]
)
def test_anonymous_callers_get_a_json_401_not_a_login_redirect(client, url):
    assert_error(client.get(url), 401, "not_authenticated")


def test_anonymous_writes_get_a_json_401(client, patients):
    assert_error(
        post_json(client, notes_url(patients["patient1"]), {"body": "x"}), 401, "not_authenticated"
    )


@pytest.mark.parametrize(
    ("username", "role"), [("doctor1", "doctor"), ("patient2", "patient"), ("admin", "admin")]
)
def test_me_says_who_is_logged_in(client_for, username, role):
    response = client_for(username).get(ME)
    assert response.status_code == 200
    assert response.json() == {"username": username, "role": role}


def test_other_methods_get_a_json_405(client_for):
    response = client_for("doctor1").post(ME)
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"


def test_unknown_api_paths_get_a_json_404(client_for):
    assert_error(client_for("doctor1").get("/api/v1/nothing/here"), 404, "not_found")


def test_writes_need_the_csrf_token(users, patients):
    client = Client(enforce_csrf_checks=True)
    client.get(reverse("accounts:login"))  # any page with a form sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    client.force_login(users["doctor1"])
    url = notes_url(patients["patient1"])
    assert_error(post_json(client, url, {"body": "Seen today."}), 403, "csrf_failed")
    entry = latest("access.denied")
    assert (entry.actor, entry.details["reason"]) == ("doctor1", "csrf")
    response = client.post(
        url,
        json.dumps({"body": "Seen today."}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 201


def test_responses_are_not_cached(client_for):
    assert client_for("doctor1").get(PATIENTS)["Cache-Control"] == "no-store"


# -- patients -------------------------------------------------------------------------------------


def test_a_doctor_lists_their_own_patients_only(client_for, patients):
    response = client_for("doctor1").get(PATIENTS)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert body["page"] == 1
    assert body["pages"] == 1
    assert {(p["id"], p["name"], p["mrn"]) for p in body["results"]} == {
        (str(patients[u].pk), SPEC[u].name, SPEC[u].mrn) for u in ("patient1", "patient2")
    }
    assert SPEC["patient3"].name not in response.content.decode()
    entry = latest("phi.list")
    assert entry.actor == "doctor1"
    assert set(entry.details["patients"]) == {
        str(patients["patient1"].pk),
        str(patients["patient2"].pk),
    }


def test_the_patient_list_pages(client_for):
    client = client_for("doctor2")
    assert_error(client.get(PATIENTS, {"page": "0"}), 400, "validation_failed")
    assert_error(client.get(PATIENTS, {"page": "abc"}), 400, "validation_failed")
    assert_error(client.get(PATIENTS, {"page": "2"}), 404, "not_found")
    assert client.get(PATIENTS, {"page": "1"}).json()["count"] == 1


@pytest.mark.parametrize("username", ["patient1", "labtech1", "admin"])
def test_only_doctors_list_patients_and_others_are_audited(client_for, username):
    assert_error(client_for(username).get(PATIENTS), 403, "forbidden")
    entry = latest("access.denied")
    assert entry.actor == username
    assert entry.details["path"] == PATIENTS


# -- patient record -------------------------------------------------------------------------------


def test_a_doctor_reads_their_patients_record(client_for, patients):
    response = client_for("doctor1").get(record_url(patients["patient2"]))
    assert response.status_code == 200
    body = response.json()
    spec = SPEC["patient2"]
    assert body["id"] == str(patients["patient2"].pk)
    assert body["access"] == "care-team"
    assert body["demographics"]["name"] == spec.name
    assert body["demographics"]["birth_date"] == spec.birth_date.isoformat()
    assert [d["description"] for d in body["diagnoses"]] == [spec.diagnoses[0][1]]
    assert body["diagnoses"][0]["data_class"] == "sensitive"
    prescription = body["prescriptions"][0]
    assert (prescription["drug"], prescription["dose"]) == spec.prescription[:2]
    assert prescription["signature"] == "valid"
    lab = body["lab_results"][0]
    assert (lab["test"], lab["values"], lab["comment"]) == spec.lab
    assert lab["signature"] == "valid"
    assert lab["files"][0]["type"] == "application/pdf"
    assert spec.note not in response.content.decode()  # notes are not part of this endpoint


def test_reading_a_record_is_audited_by_section(client_for, patients):
    client_for("doctor1").get(record_url(patients["patient1"]))
    entry = latest("phi.read")
    assert entry.actor == "doctor1"
    assert entry.patient_id == str(patients["patient1"].pk)
    assert entry.details["via"] == "care-team"
    assert {"demographics", "diagnoses", "prescriptions", "lab_results"} <= set(
        entry.details["sections"]
    )
    assert "notes" not in entry.details["sections"]


def test_a_patient_reads_their_own_record(client_for, patients):
    response = client_for("patient3").get(record_url(patients["patient3"]))
    assert response.status_code == 200
    body = response.json()
    assert body["access"] == "self"
    assert body["demographics"]["mrn"] == SPEC["patient3"].mrn
    assert latest("phi.read").actor == "patient3"


def test_a_patient_gets_404_for_someone_elses_record(client_for, patients):
    response = client_for("patient1").get(record_url(patients["patient2"]))
    assert_error(response, 404, "not_found")
    assert SPEC["patient2"].name not in response.content.decode()
    assert latest("access.denied").actor == "patient1"


def test_a_doctor_gets_404_for_another_doctors_patient_and_an_audit_entry(client_for, patients):
    before = AuditEntry.objects.filter(action="access.denied").count()
    response = client_for("doctor2").get(record_url(patients["patient1"]))
    assert_error(response, 404, "not_found")
    assert SPEC["patient1"].name not in response.content.decode()
    assert AuditEntry.objects.filter(action="access.denied").count() == before + 1
    entry = latest("access.denied")
    assert (entry.actor, entry.outcome) == ("doctor2", "denied")
    assert entry.target_id == str(patients["patient1"].pk)


def test_an_unknown_patient_is_a_404_like_a_forbidden_one(client_for):
    response = client_for("doctor1").get("/api/v1/patients/00000000-0000-0000-0000-000000000001")
    assert_error(response, 404, "not_found")


def test_break_glass_opens_the_record_and_the_read_is_an_alert(client_for, users, patients):
    clinic.do_break_glass(
        users["doctor2"], patients["patient1"], reason="Unconscious in the emergency room today."
    )
    response = client_for("doctor2").get(record_url(patients["patient1"]))
    assert response.json()["access"] == "break-glass"
    assert latest("phi.read").outcome == "alert"


@pytest.mark.parametrize("username", ["labtech1", "admin"])
def test_lab_technicians_and_officers_get_403_on_a_record_with_an_audit_entry(
    client_for, patients, username
):
    response = client_for(username).get(record_url(patients["patient1"]))
    assert_error(response, 403, "forbidden")
    assert SPEC["patient1"].name not in response.content.decode()
    entry = latest("access.denied")
    assert entry.actor == username
    assert entry.target_id == str(patients["patient1"].pk)
    assert not AuditEntry.objects.filter(action="phi.read", actor=username).exists()


def test_a_tampered_prescription_shows_as_tampered(client_for, patients):
    prescription = Prescription.objects.get(patient=patients["patient1"])
    other = Prescription.objects.get(patient=patients["patient2"])
    # Swap in another row's ciphertext: it cannot authenticate under this row's binding.
    Prescription.objects.filter(pk=prescription.pk).update(dose_enc=other.dose_enc)
    body = client_for("patient1").get(record_url(patients["patient1"])).json()
    assert body["prescriptions"][0]["signature"] == "tampered"
    assert body["prescriptions"][0]["dose"] is None


# -- lab queue ------------------------------------------------------------------------------------


def test_the_lab_queue_lists_pending_requests_without_patient_identity(client_for):
    response = client_for("labtech1").get(LAB_QUEUE)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    (item,) = body["results"]
    assert set(item) == {"id", "sample_code", "test", "notes"}
    assert (item["test"], item["notes"]) == ("Lipid panel", "Fasting sample")
    assert item["sample_code"].startswith("S-")
    html = response.content.decode()
    for spec in demo.PATIENTS:
        for text in (spec.name, spec.mrn, spec.email):
            assert text not in html
    assert latest("phi.list").actor == "labtech1"


@pytest.mark.parametrize("username", ["doctor1", "patient1", "admin"])
def test_only_lab_technicians_see_the_queue(client_for, username):
    assert_error(client_for(username).get(LAB_QUEUE), 403, "forbidden")
    assert latest("access.denied").actor == username


# -- notes ----------------------------------------------------------------------------------------


def test_a_doctor_adds_a_note_through_the_api(client_for, users, patients):
    response = post_json(
        client_for("doctor1"), notes_url(patients["patient1"]), {"body": "  BP 120/80, stable.  "}
    )
    assert response.status_code == 201
    body = response.json()
    note = ClinicalNote.objects.get(pk=body["id"])
    assert body["patient"] == str(patients["patient1"].pk)
    assert note.author == users["doctor1"]
    assert note.unseal("body") == "BP 120/80, stable."
    assert b"BP 120/80" not in bytes(note.body_enc)
    assert latest("note.create").target_id == body["id"]


@pytest.mark.parametrize(
    "payload", [{"body": ""}, {"body": "   "}, {}, {"body": 42}, {"text": "hi"}]
)
def test_a_note_without_a_body_is_a_400_with_the_message(client_for, patients, payload):
    before = ClinicalNote.objects.count()
    response = post_json(client_for("doctor1"), notes_url(patients["patient1"]), payload)
    error = assert_error(response, 400, "validation_failed")
    assert "body" in error["message"]
    assert error["field"] == "body"
    assert ClinicalNote.objects.count() == before


def test_a_too_long_note_is_a_400(client_for, patients):
    response = post_json(
        client_for("doctor1"), notes_url(patients["patient1"]), {"body": "x" * 20001}
    )
    assert "longer than 20000" in assert_error(response, 400, "validation_failed")["message"]


@pytest.mark.parametrize("raw", ["{not json", "", "[1, 2]", '"just a string"', b"\xff\xfe"])
def test_malformed_json_is_a_400(client_for, patients, raw):
    response = post_json(client_for("doctor1"), notes_url(patients["patient1"]), raw)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] in ("invalid_json", "validation_failed")
    assert error["message"].startswith(("the body is not valid", "body must be a JSON object"))


def test_invalid_json_says_so(client_for, patients):
    response = post_json(client_for("doctor1"), notes_url(patients["patient1"]), "{oops")
    error = assert_error(response, 400, "invalid_json")
    assert error["message"].startswith("the body is not valid JSON (")


def test_a_doctor_cannot_add_a_note_for_another_doctors_patient(client_for, patients):
    before = ClinicalNote.objects.count()
    response = post_json(
        client_for("doctor2"), notes_url(patients["patient1"]), {"body": "Sneaky."}
    )
    assert_error(response, 404, "not_found")
    assert ClinicalNote.objects.count() == before
    assert latest("access.denied").actor == "doctor2"


@pytest.mark.parametrize("username", ["patient1", "labtech1", "admin"])
def test_only_doctors_add_notes(client_for, patients, username):
    response = post_json(client_for(username), notes_url(patients["patient1"]), {"body": "Hello."})
    assert_error(response, 403, "forbidden")
    assert latest("access.denied").actor == username


def test_notes_take_only_post(client_for, patients):
    assert_error(
        client_for("doctor1").get(notes_url(patients["patient1"])), 405, "method_not_allowed"
    )
