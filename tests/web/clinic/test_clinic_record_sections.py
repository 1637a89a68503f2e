"""The record's sections a slice at a time (issue 16): newest first, keyset cursors, "show more"
through htmx or as plain links, the same access rules and audit as the record page, and only
the shown rows decrypted."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from clinic_helpers import HTMX, entries, is_fragment, text
from decryption_spy import spy_on_decryption
from django.urls import reverse
from django.utils import timezone

from carevault.attacklab.scenarios._rest import next_notes_link
from carevault.web.audit.log import Outcome
from carevault.web.clinic import actions
from carevault.web.clinic.models import Appointment, ClinicalNote
from carevault.web.clinic.paging import RECORD_PAGE_SIZE, Cursor

pytestmark = pytest.mark.django_db

BODY = re.compile(r"Slice note (\d{3})\b")


def add_notes(users, patient, n, *, same_time=False):
    """``n`` notes by doctor1, "Slice note 000" the oldest; with ``same_time`` they all share
    one timestamp (only the id orders them)."""
    notes = [
        actions.do_add_note(users["doctor1"], patient, body=f"Slice note {i:03d}") for i in range(n)
    ]
    base = timezone.now() + dt.timedelta(days=1)  # newer than the seeded notes
    for i, note in enumerate(notes):
        at = base if same_time else base + dt.timedelta(seconds=i)
        ClinicalNote.objects.filter(pk=note.pk).update(created_at=at)
    return notes


def shown(page):
    return [int(m) for m in BODY.findall(page)]


def section_url(patient, section="notes", before=None):
    url = reverse("clinic:record_section", args=[patient.pk, section])
    return url if before is None else f"{url}?before={before}"


def detail(patient):
    return reverse("clinic:patient_detail", args=[patient.pk])


def newest_first(patient):
    return list(
        ClinicalNote.objects.filter(patient=patient)
        .order_by("-created_at", "-pk")
        .values_list("pk", flat=True)
    )


# -- the record page -------------------------------------------------------------------------------


def test_the_record_page_shows_the_newest_notes_first_and_a_link_to_the_rest(
    client_for, users, patients
):
    patient = patients["patient1"]
    add_notes(users, patient, 25)
    page = text(client_for("doctor1").get(detail(patient)))
    assert shown(page) == list(range(24, 24 - RECORD_PAGE_SIZE, -1))
    link = next_notes_link(page)  # what the attack lab's integrity walk follows
    assert link is not None
    assert link.startswith(section_url(patient) + "?before=")
    assert "Show older clinical notes" in page


def test_a_short_section_has_no_show_more(client_for, patients):
    page = text(client_for("doctor1").get(detail(patients["patient1"])))
    assert 'data-more="' not in page
    assert next_notes_link(page) is None


def test_the_record_page_decrypts_only_the_notes_it_shows(client_for, users, patients):
    patient = patients["patient1"]
    add_notes(users, patient, 45)
    opened = spy_on_decryption()
    with opened:
        response = client_for("doctor1").get(detail(patient))
    assert response.status_code == 200
    assert opened.rows("clinic_clinicalnote") == RECORD_PAGE_SIZE


# -- following "show more" -------------------------------------------------------------------------


@pytest.mark.parametrize("same_time", [False, True], ids=["distinct times", "one timestamp"])
def test_each_slice_continues_exactly_where_the_last_stopped(
    client_for, users, patients, same_time
):
    patient = patients["patient1"]
    notes = add_notes(users, patient, 2 * RECORD_PAGE_SIZE + 5, same_time=same_time)
    number = {note.pk: i for i, note in enumerate(notes)}
    # Newest first; rows with one timestamp by id, descending.
    expected = [number[pk] for pk in newest_first(patient) if pk in number]
    client = client_for("doctor1")
    first = text(client.get(detail(patient)))
    seen = shown(first)
    link = next_notes_link(first)
    slices = 1
    while link is not None:
        response = client.get(link, headers=HTMX)
        assert response.status_code == 200
        assert is_fragment(response)
        seen += shown(text(response))
        link = next_notes_link(text(response))
        slices += 1
    assert slices == 3
    assert seen == expected  # in order, no gap, no duplicate
    assert sorted(seen) == list(range(2 * RECORD_PAGE_SIZE + 5))
    if not same_time:
        assert expected == list(range(2 * RECORD_PAGE_SIZE + 4, -1, -1))


def test_a_slice_decrypts_only_its_own_rows(client_for, users, patients):
    patient = patients["patient1"]
    add_notes(users, patient, 3 * RECORD_PAGE_SIZE)
    ids = newest_first(patient)
    after = ClinicalNote.objects.get(pk=ids[RECORD_PAGE_SIZE - 1])
    opened = spy_on_decryption()
    with opened:
        response = client_for("doctor1").get(
            section_url(patient, before=Cursor(after.created_at, after.pk)), headers=HTMX
        )
    assert shown(text(response)) == list(range(2 * RECORD_PAGE_SIZE - 1, RECORD_PAGE_SIZE - 1, -1))
    assert opened.rows("clinic_clinicalnote") == RECORD_PAGE_SIZE
    assert opened.total() == RECORD_PAGE_SIZE  # nothing else: no demographics, no other section


def test_a_slice_read_is_audited_like_the_record_page(client_for, users, patients):
    patient = patients["patient1"]
    add_notes(users, patient, 25)
    client = client_for("doctor1")
    link = next_notes_link(text(client.get(detail(patient))))
    client.get(link, headers=HTMX)
    _page_read, slice_read = entries("phi.read", actor="doctor1")
    assert slice_read.patient_id == str(patient.pk)
    assert slice_read.outcome == Outcome.OK
    assert slice_read.details["via"] == "care-team"
    assert slice_read.details["sections"] == ["notes"]
    assert link.endswith(slice_read.details["before"])


def test_the_slice_endpoint_opened_directly_is_a_page_that_works_without_javascript(
    client_for, users, patients
):
    patient = patients["patient1"]
    add_notes(users, patient, 2 * RECORD_PAGE_SIZE + 1)
    client = client_for("doctor1")
    link = next_notes_link(text(client.get(detail(patient))))
    response = client.get(link)
    page = text(response)
    assert response.status_code == 200
    assert not is_fragment(response)
    assert "<h1" in page
    assert "Clinical notes" in page
    assert f'href="{detail(patient)}#section-notes"' in page
    assert shown(page) == list(range(RECORD_PAGE_SIZE, 0, -1))
    following = next_notes_link(page)
    assert following is not None
    assert following != link
    assert "HX-Request" in response["Vary"]


def test_the_first_slice_needs_no_cursor(client_for, users, patients):
    patient = patients["patient1"]
    add_notes(users, patient, 3)
    response = client_for("doctor1").get(section_url(patient))
    assert response.status_code == 200
    assert shown(text(response)) == [2, 1, 0]


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "12345",
        f"12345.{'z' * 32}",
        f"999999999999999999.{'a' * 32}",  # after the year 9999
        f"-99999999999999999.{'a' * 32}",  # before the year 1
        f"9999999999999999999.{'a' * 32}",
        "12345." + "a" * 31,
    ],
)
def test_a_malformed_cursor_is_a_clear_400_and_reads_nothing(client_for, patients, cursor):
    response = client_for("doctor1").get(section_url(patients["patient1"], before=cursor))
    assert response.status_code == 400
    assert "show more" in text(response)
    assert not entries("phi.read", actor="doctor1")


def test_an_unknown_section_is_not_found(client_for, patients):
    response = client_for("doctor1").get(section_url(patients["patient1"], "passwords"))
    assert response.status_code == 404


def test_another_doctors_patients_section_is_refused_and_audited(client_for, patients):
    patient3 = patients["patient3"]
    response = client_for("doctor1").get(section_url(patient3))
    assert response.status_code == 404
    assert "Chiamaka" not in text(response)
    (denied,) = entries("access.denied", actor="doctor1")
    assert denied.target_id == str(patient3.pk)
    assert not entries("phi.read", actor="doctor1")


@pytest.mark.parametrize("username", ["patient1", "labtech1", "admin"])
def test_only_doctors_use_the_doctors_section_endpoint(client_for, patients, username):
    response = client_for(username).get(section_url(patients["patient1"]))
    assert response.status_code == 403
    assert entries("access.denied", actor=username)


def test_under_break_glass_a_slice_is_an_alert_like_the_record_page(client_for, users, patients):
    patient3 = patients["patient3"]
    add_notes(users, patient3, 1)
    client = client_for("doctor1")
    reason = "Unconscious in the emergency department, allergy history needed now."
    glass = client.post(reverse("clinic:break_glass", args=[patient3.pk]), {"reason": reason})
    assert glass.status_code == 302
    response = client.get(section_url(patient3))
    assert response.status_code == 200
    assert "Emergency access (break-glass)" in text(response)
    (read,) = entries("phi.read", actor="doctor1")
    assert read.outcome == Outcome.ALERT
    assert read.details["via"] == "break-glass"


# -- the patient's own record --------------------------------------------------------------------


def test_a_patient_pages_through_their_own_notes(client_for, users, patients):
    patient = patients["patient1"]
    add_notes(users, patient, RECORD_PAGE_SIZE + 2)
    client = client_for("patient1")
    page = text(client.get(reverse("clinic:patient_home")))
    assert shown(page) == list(range(RECORD_PAGE_SIZE + 1, 1, -1))
    link = next_notes_link(page)
    assert link is not None
    assert link.startswith(reverse("clinic:own_section", args=["notes"]))
    rest = client.get(link, headers=HTMX)
    assert shown(text(rest))[:2] == [1, 0]
    assert entries("phi.read", actor="patient1")[-1].details["via"] == "self"


def test_a_patient_cannot_use_the_doctors_endpoint_for_another_record(client_for, patients):
    response = client_for("patient1").get(
        reverse("clinic:record_section", args=[patients["patient2"].pk, "notes"])
    )
    assert response.status_code == 403


def test_a_patients_older_appointments_keep_their_cancel_buttons(client_for, users, patients):
    patient = patients["patient1"]
    doctor = users["doctor1"]
    start = timezone.now() + dt.timedelta(days=30)
    for i in range(RECORD_PAGE_SIZE + 3):
        appointment = Appointment(
            patient=patient, doctor=doctor, starts_at=start + dt.timedelta(hours=i)
        )
        actions.store_sealed(
            appointment,
            patient,
            action="appointment.request",
            acting_user=users["patient1"],
            client=actions.NO_CLIENT,
            reason=f"Check-up {i:03d}",
        )
    client = client_for("patient1")
    page = text(client.get(reverse("clinic:patient_home")))
    assert f"Check-up {RECORD_PAGE_SIZE + 2:03d}" in page  # the latest first
    assert "Check-up 000" not in page
    match = re.search(r'href="([^"]+)"[^>]*data-more="appointments"', page)
    assert match is not None
    rest = text(client.get(match.group(1).replace("&amp;", "&"), headers=HTMX))
    assert "Check-up 000" in rest
    assert rest.count(">Cancel</button>") >= 3
