"""The patient's own pages: their record, appointments and who accessed the record."""

from __future__ import annotations

import datetime as dt

import pytest
from clinic_helpers import HTMX, entries, is_fragment, text
from django.urls import reverse
from django.utils import timezone

from carevault.web import demo
from carevault.web.audit.log import Outcome, record
from carevault.web.clinic.models import Appointment, AppointmentStatus, Prescription

pytestmark = pytest.mark.django_db

HOME = reverse("clinic:patient_home")
HISTORY = reverse("clinic:patient_history")
BOOK = reverse("clinic:book_appointment")


def slot(days=10, hour=9):
    start = (timezone.now() + dt.timedelta(days=days)).replace(
        hour=hour, minute=30, second=0, microsecond=0
    )
    return start, start.strftime("%Y-%m-%dT%H:%M")


def booking(users, when, reason="Knee pain after running", doctor="doctor1"):
    return {"doctor": users[doctor].pk, "starts_at": when, "reason": reason}


# -- the record ------------------------------------------------------------------------------------


def test_a_patient_sees_their_own_record(client_for):
    response = client_for("patient1").get(HOME)
    page = text(response)
    assert response.status_code == 200
    assert "Alice Wonderland-Smith" in page
    assert "Type 2 diabetes mellitus without complications" in page
    assert "Metformin" in page
    assert "Signature valid" in page
    assert "HbA1c 6.9 %" in page
    assert "improved glucose control" in page  # notes are theirs too
    assert "Routine follow-up" in page


def test_a_patient_sees_nothing_of_other_patients(client_for):
    page = text(client_for("patient1").get(HOME))
    assert "Bartholomew" not in page
    assert "Chiamaka" not in page


def test_a_patient_sees_their_lab_file(client_for):
    page = text(client_for("patient2").get(HOME))
    assert demo.DEMO_PDF_NAME in page
    assert "TSH 2.1 mIU/L" in page


def test_a_patient_reading_their_record_is_audited_as_self(client_for, patients):
    client_for("patient1").get(HOME)
    (read,) = entries("phi.read", actor="patient1")
    assert read.details["via"] == "self"
    assert read.patient_id == str(patients["patient1"].pk)


def test_a_patient_sees_a_tampered_prescription_as_tampered(client_for, patients):
    p = Prescription.objects.get(patient=patients["patient1"])
    Prescription.objects.filter(pk=p.pk).update(instructions_enc=b"garbage")
    page = text(client_for("patient1").get(HOME))
    assert "TAMPERED" in page
    assert "unreadable — tampered" in page


def test_a_patient_cannot_open_patient_detail_even_their_own(client_for, patients):
    url = reverse("clinic:patient_detail", args=[patients["patient1"].pk])
    response = client_for("patient1").get(url)
    assert response.status_code == 403
    (denied,) = entries("access.denied", actor="patient1")
    assert denied.outcome == Outcome.DENIED


@pytest.mark.parametrize("username", ["doctor1", "labtech1", "admin"])
def test_only_patients_may_open_the_patient_pages(client_for, username):
    client = client_for(username)
    assert client.get(HOME).status_code == 403
    assert client.get(HISTORY).status_code == 403


# -- appointments ----------------------------------------------------------------------------------


def test_a_patient_books_an_appointment_without_javascript(client_for, users, patients):
    start, when = slot()
    response = client_for("patient1").post(BOOK, booking(users, when))
    assert response.status_code == 302
    assert response["Location"] == f"{HOME}#section-appointments"
    booked = Appointment.objects.get(patient=patients["patient1"], starts_at=start)
    assert booked.status == AppointmentStatus.REQUESTED
    assert booked.doctor == users["doctor1"]
    assert booked.unseal("reason") == "Knee pain after running"
    assert b"Knee pain" not in bytes(booked.reason_enc)
    assert entries("appointment.request", actor="patient1", target_id=str(booked.pk))


def test_a_patient_books_with_htmx_and_gets_the_appointments_back(client_for, users, patients):
    start, when = slot()
    response = client_for("patient1").post(BOOK, booking(users, when), headers=HTMX)
    assert response.status_code == 200
    assert is_fragment(response)
    assert 'id="section-appointments"' in text(response)
    assert "Knee pain after running" in text(response)
    assert "Appointment requested" in text(response)
    assert Appointment.objects.filter(patient=patients["patient1"], starts_at=start).exists()


@pytest.mark.parametrize("htmx", [False, True], ids=["post", "htmx"])
def test_a_patient_cannot_book_in_the_past(client_for, users, htmx):
    _, when = slot(days=-1)
    before = Appointment.objects.count()
    response = client_for("patient1").post(BOOK, booking(users, when), headers=HTMX if htmx else {})
    assert response.status_code == 400
    assert "must be in the future" in text(response)
    assert "is-invalid" in text(response)
    assert is_fragment(response) == htmx
    assert Appointment.objects.count() == before


def test_a_patient_cannot_book_a_slot_that_is_taken(client_for, users, patients):
    taken = Appointment.objects.get(patient=patients["patient1"])  # with doctor1
    when = taken.starts_at.strftime("%Y-%m-%dT%H:%M")
    before = Appointment.objects.count()
    response = client_for("patient2").post(BOOK, booking(users, when), headers=HTMX)
    assert response.status_code == 400
    assert "already taken" in text(response)
    assert Appointment.objects.count() == before


def test_a_patient_must_choose_a_doctor_not_another_role(client_for, users):
    _, when = slot()
    response = client_for("patient1").post(BOOK, booking(users, when, doctor="labtech1"))
    assert response.status_code == 400
    assert "Select a valid choice" in text(response)


def test_the_booking_form_offers_active_doctors_only(client_for, users):
    users["doctor2"].is_active = False
    users["doctor2"].save(update_fields=["is_active"])
    page = text(client_for("patient1").get(HOME))
    assert "Dr Meredith Grey" in page
    assert "Dr Gregory House" not in page


def _own_appointment(patients, username="patient1"):
    return Appointment.objects.get(patient=patients[username])


def test_a_patient_cancels_an_appointment_with_htmx(client_for, patients):
    appointment = _own_appointment(patients)
    url = reverse("clinic:cancel_appointment", args=[appointment.pk])
    response = client_for("patient1").post(url, headers=HTMX)
    assert response.status_code == 200
    assert is_fragment(response)
    assert f'id="appointment-{appointment.pk}"' in text(response)
    assert "Cancelled" in text(response)
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED
    assert entries("appointment.cancel", actor="patient1")


def test_a_patient_cancels_without_javascript(client_for, patients):
    appointment = _own_appointment(patients)
    url = reverse("clinic:cancel_appointment", args=[appointment.pk])
    response = client_for("patient1").post(url)
    assert response.status_code == 302
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED


def test_cancelling_twice_is_refused_inline(client_for, patients):
    appointment = _own_appointment(patients)
    url = reverse("clinic:cancel_appointment", args=[appointment.pk])
    client = client_for("patient1")
    client.post(url, headers=HTMX)
    response = client.post(url, headers=HTMX)
    assert response.status_code == 400
    assert "no longer active" in text(response)


def test_a_patient_cannot_cancel_another_patients_appointment(client_for, patients):
    theirs = _own_appointment(patients, "patient2")
    url = reverse("clinic:cancel_appointment", args=[theirs.pk])
    response = client_for("patient1").post(url, headers=HTMX)
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == AppointmentStatus.REQUESTED
    (denied,) = entries("access.denied", actor="patient1")
    assert denied.target_id == str(theirs.pk)


# -- who accessed my record ------------------------------------------------------------------------


def test_the_access_history_lists_the_doctors_read(client_for, patients):
    client_for("doctor1").get(reverse("clinic:patient_detail", args=[patients["patient1"].pk]))
    response = client_for("patient1").get(HISTORY)
    assert response.status_code == 200
    reads = [row for row in response.context["rows"] if row["entry"].action == "phi.read"]
    assert [row["entry"].actor for row in reads] == ["doctor1"]
    page = text(response)
    assert "doctor1" in page
    assert "Opened your record" in page
    assert "Doctor" in page


def test_the_access_history_shows_break_glass_as_an_alert(client_for, patients):
    patient1 = patients["patient1"]
    doctor2 = client_for("doctor2")
    doctor2.post(
        reverse("clinic:break_glass", args=[patient1.pk]),
        {"reason": "Collapsed at the pharmacy, needs medication list."},
    )
    doctor2.get(reverse("clinic:patient_detail", args=[patient1.pk]))
    response = client_for("patient1").get(HISTORY)
    alerts = [r for r in response.context["rows"] if r["entry"].outcome == Outcome.ALERT]
    assert {r["entry"].action for r in alerts} == {"breakglass.open", "phi.read"}
    assert {r["entry"].actor for r in alerts} == {"doctor2"}
    assert "emergency access" in text(response)


def test_the_access_history_shows_only_this_patients_entries(client_for, patients):
    client_for("doctor1").get(reverse("clinic:patient_detail", args=[patients["patient2"].pk]))
    response = client_for("patient1").get(HISTORY)
    assert response.context["rows"]
    mine = str(patients["patient1"].pk)
    assert all(row["entry"].patient_id == mine for row in response.context["rows"])


def test_the_access_history_is_paginated_newest_first(client_for, users, patients):
    for _ in range(30):
        record("phi.read", actor=users["doctor1"], patient_id=patients["patient1"].pk)
    client = client_for("patient1")
    first = client.get(HISTORY)
    seqs = [row["entry"].seq for row in first.context["rows"]]
    assert len(seqs) == 25
    assert seqs == sorted(seqs, reverse=True)
    assert client.get(HISTORY, {"page": 2}).context["rows"]


def test_the_access_history_hides_the_patients_own_visits_unless_asked(client_for):
    client = client_for("patient1")
    client.get(HOME)  # an audited read by the patient themself
    others = client.get(HISTORY).context["rows"]
    assert all(row["entry"].actor != "patient1" for row in others)
    everything = client.get(HISTORY, {"mine": "1"}).context["rows"]
    assert any(row["entry"].actor == "patient1" for row in everything)
