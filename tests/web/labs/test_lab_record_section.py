"""The lab work on the record pages, a slice at a time (issue 16): the newest requests first,
"show more" for the rest, each slice an audited read that decrypts only its own rows."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from decryption_spy import spy_on_decryption
from django.urls import reverse
from django.utils import timezone

from carevault.web.audit.models import AuditEntry
from carevault.web.clinic.paging import RECORD_PAGE_SIZE
from carevault.web.labs import actions as labs
from carevault.web.labs.models import LabRequest

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
TEST = re.compile(r"Slice test (\d{3})\b")
MORE = re.compile(r'href="([^"]+)"[^>]*data-more="labs"')


def add_requests(users, patient, n):
    base = timezone.now() + dt.timedelta(days=1)  # newer than the seeded requests
    for i in range(n):
        row = labs.do_request_lab_test(users["doctor1"], patient, test=f"Slice test {i:03d}")
        LabRequest.objects.filter(pk=row.pk).update(created_at=base + dt.timedelta(seconds=i))


def more_link(page: str) -> str | None:
    match = MORE.search(page)
    return match.group(1) if match else None


def test_the_record_page_shows_the_newest_lab_requests_and_the_rest_on_request(
    client_for, users, patients
):
    patient = patients["patient1"]
    add_requests(users, patient, RECORD_PAGE_SIZE + 3)
    client = client_for("doctor1")
    page = client.get(reverse("clinic:patient_detail", args=[patient.pk])).content.decode()
    assert [int(n) for n in TEST.findall(page)] == list(range(RECORD_PAGE_SIZE + 2, 2, -1))
    assert "Show older lab tests and results" in page
    link = more_link(page)
    assert link is not None
    assert link.startswith(reverse("clinic:record_section", args=[patient.pk, "labs"]))
    rest = client.get(link, headers=HTMX).content.decode()
    assert [int(n) for n in TEST.findall(rest)] == [2, 1, 0]
    # The seeded, older request with its signed result comes after them, checked as ever.
    assert "HbA1c 6.9 %" in rest
    assert "Signature valid" in rest
    assert more_link(rest) is None


def test_a_lab_slice_is_an_audited_read_naming_the_lab_sections(client_for, users, patients):
    patient = patients["patient1"]
    client_for("doctor1").get(reverse("clinic:record_section", args=[patient.pk, "labs"]))
    read = AuditEntry.objects.filter(action="phi.read", actor="doctor1").get()
    assert read.patient_id == str(patient.pk)
    assert read.details["sections"] == ["lab_requests", "lab_results"]


def test_a_lab_slice_decrypts_only_the_requests_it_shows(client_for, users, patients):
    patient = patients["patient1"]
    add_requests(users, patient, 2 * RECORD_PAGE_SIZE)
    client = client_for("doctor1")
    opened = spy_on_decryption()
    with opened:
        page = client.get(reverse("clinic:patient_detail", args=[patient.pk])).content.decode()
    assert opened.rows("labs_labrequest") == RECORD_PAGE_SIZE
    opened = spy_on_decryption()
    with opened:
        client.get(more_link(page), headers=HTMX)
    assert opened.rows("labs_labrequest") == RECORD_PAGE_SIZE
    assert opened.rows("labs_labresult") == 0  # the seeded results are older still


def test_a_patient_pages_through_their_own_lab_results(client_for, users, patients):
    patient = patients["patient1"]
    add_requests(users, patient, RECORD_PAGE_SIZE + 1)
    client = client_for("patient1")
    page = client.get(reverse("clinic:patient_home")).content.decode()
    link = more_link(page)
    assert link is not None
    assert link.startswith(reverse("clinic:own_section", args=["labs"]))
    rest = client.get(link).content.decode()  # opened directly: a page of its own
    assert "<html" in rest
    assert "HbA1c 6.9 %" in rest
    assert "Sample " not in rest  # the lab's sample codes are the doctor's view only
