"""The doctor's home page: their patients, MRN search, appointment requests."""

from __future__ import annotations

import datetime as dt

import pytest
from clinic_helpers import HTMX, entries, is_fragment, text
from django.urls import reverse
from django.utils import timezone

from carevault.web.clinic import actions
from carevault.web.clinic.models import Appointment, AppointmentStatus, CareRelationship

pytestmark = pytest.mark.django_db

HOME = reverse("clinic:doctor_home")


def test_a_doctor_sees_their_own_patients_with_names_and_mrns(client_for):
    page = text(client_for("doctor1").get(HOME))
    assert "Alice Wonderland-Smith" in page
    assert "MRN-10000001" in page
    assert "Bartholomew Quigley" in page


def test_a_doctor_does_not_see_another_doctors_patients(client_for):
    page = text(client_for("doctor1").get(HOME))
    assert "Chiamaka" not in page
    assert "MRN-10000003" not in page


def test_listing_patients_is_one_audited_read_without_phi_in_the_log(client_for, patients):
    client_for("doctor1").get(HOME)
    (entry,) = entries("phi.list", actor="doctor1")
    assert str(patients["patient1"].pk) in entry.details["patients"]
    assert "Alice" not in str(entry.details)


def test_the_patient_list_is_paginated_twenty_to_a_page(client_for, users):
    doctor2 = users["doctor2"]
    for i in range(20):
        patient = actions.do_create_patient(
            users["admin"], name=f"Extra Patient {i:02d}", birth_date=dt.date(1990, 1, 1)
        )
        actions.do_assign_doctor(users["admin"], doctor2, patient)
    client = client_for("doctor2")
    first, second = client.get(HOME), client.get(HOME, {"page": 2})
    assert len(first.context["patients"]) == 20
    assert len(second.context["patients"]) == 1
    assert "Page 2 of 2" in text(second)


def test_the_mrn_search_finds_a_patient_by_exact_mrn(client_for, patients):
    response = client_for("doctor1").post(HOME, {"query": "MRN-10000002"})
    page = text(response)
    assert response.status_code == 200
    assert "Bartholomew Quigley" in page
    assert reverse("clinic:patient_detail", args=[patients["patient2"].pk]) in page


def test_the_mrn_search_does_not_match_part_of_an_mrn(client_for):
    page = text(client_for("doctor1").post(HOME, {"query": "MRN-1000000"}))
    assert "No patient has this MRN" in page


def test_an_empty_mrn_search_is_an_inline_error(client_for):
    response = client_for("doctor1").post(HOME, {"query": ""})
    assert response.status_code == 400
    assert "This field is required" in text(response)


def test_finding_another_doctors_patient_offers_break_glass_instead_of_data(client_for, patients):
    page = text(client_for("doctor1").post(HOME, {"query": "MRN-10000003"}))
    assert "Chiamaka" not in page
    assert "Break the glass" in page
    assert reverse("clinic:break_glass", args=[patients["patient3"].pk]) in page


def test_an_mrn_search_lands_in_the_patients_access_history(client_for, patients):
    client_for("doctor1").post(HOME, {"query": "MRN-10000003"})
    (entry,) = entries("patient.search", actor="doctor1")
    assert entry.patient_id == str(patients["patient3"].pk)
    assert "MRN" not in str(entry.details)


def test_pending_requests_and_upcoming_appointments_are_listed(client_for, users, patients):
    confirmed = Appointment.objects.filter(patient=patients["patient2"]).get()
    actions.do_decide_appointment(users["doctor1"], confirmed, confirm=True)
    response = client_for("doctor1").get(HOME)
    assert [a.patient for a, _, _ in response.context["pending"]] == [patients["patient1"]]
    assert [a.patient for a, _, _ in response.context["upcoming"]] == [patients["patient2"]]
    assert "Routine follow-up" in text(response)


def _pending_for(patient):
    return Appointment.objects.get(patient=patient, status=AppointmentStatus.REQUESTED)


def test_a_doctor_confirms_a_request_with_htmx_and_gets_the_row_back(client_for, patients):
    appointment = _pending_for(patients["patient1"])
    url = reverse("clinic:decide_appointment", args=[appointment.pk])
    response = client_for("doctor1").post(url, {"decision": "confirm"}, headers=HTMX)
    assert response.status_code == 200
    assert is_fragment(response)
    assert f'id="appointment-{appointment.pk}"' in text(response)
    assert "Confirmed" in text(response)
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CONFIRMED
    assert entries("appointment.confirm", actor="doctor1")


def test_a_doctor_declines_without_javascript_and_returns_home(client_for, patients):
    appointment = _pending_for(patients["patient1"])
    url = reverse("clinic:decide_appointment", args=[appointment.pk])
    response = client_for("doctor1").post(url, {"decision": "decline"})
    assert response.status_code == 302
    assert response["Location"] == HOME
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.DECLINED


def test_deciding_an_appointment_twice_is_refused_inline(client_for, patients):
    appointment = _pending_for(patients["patient1"])
    url = reverse("clinic:decide_appointment", args=[appointment.pk])
    client = client_for("doctor1")
    client.post(url, {"decision": "confirm"}, headers=HTMX)
    response = client.post(url, {"decision": "decline"}, headers=HTMX)
    assert response.status_code == 400
    assert "already been decided" in text(response)
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CONFIRMED


def test_a_doctor_cannot_decide_another_doctors_appointment(client_for, patients):
    appointment = _pending_for(patients["patient1"])  # with doctor1
    url = reverse("clinic:decide_appointment", args=[appointment.pk])
    response = client_for("doctor2").post(url, {"decision": "confirm"}, headers=HTMX)
    assert response.status_code == 404
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.REQUESTED
    (denied,) = entries("access.denied", actor="doctor2")
    assert denied.target_id == str(appointment.pk)


def test_confirming_a_new_patients_request_adds_them_to_the_doctors_list(
    client_for, users, patients
):
    booked = actions.do_request_appointment(
        users["patient3"],
        doctor=users["doctor1"],
        starts_at=timezone.now() + dt.timedelta(days=9),
        reason="Second opinion",
    )
    url = reverse("clinic:decide_appointment", args=[booked.pk])
    client_for("doctor1").post(url, {"decision": "confirm"}, headers=HTMX)
    assert CareRelationship.objects.filter(
        doctor=users["doctor1"], patient=patients["patient3"]
    ).exists()
    assert "Chiamaka Okonkwo-Berg" in text(client_for("doctor1").get(HOME))


@pytest.mark.parametrize("username", ["patient1", "labtech1", "admin"])
def test_only_doctors_may_open_the_doctor_home(client_for, username):
    assert client_for(username).get(HOME).status_code == 403


def test_an_anonymous_visitor_is_sent_to_log_in(client_for):
    response = client_for(None).get(HOME)
    assert response.status_code == 302
    assert reverse("accounts:login") in response["Location"]


def test_a_doctor_finds_a_patient_by_exact_email_whatever_its_case(client_for):
    page = text(client_for("doctor1").post(HOME, {"query": "  Alice.Smith@Example.org "}))
    assert "Alice Wonderland-Smith" in page


def test_an_email_that_matches_nobody_finds_nobody(client_for):
    page = text(client_for("doctor1").post(HOME, {"query": "nobody@example.org"}))
    assert "Alice Wonderland-Smith" not in page.split("Find a patient")[1]
