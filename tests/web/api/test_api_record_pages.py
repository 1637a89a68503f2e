"""The API's patient record is bounded (issue 16): the newest RECORD_PAGE_SIZE of each list with
a ``next`` link per list, followed with ``?section=&before=`` to the end."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from carevault.web.audit.models import AuditEntry
from carevault.web.clinic import actions as clinic
from carevault.web.clinic.models import Diagnosis
from carevault.web.clinic.paging import RECORD_PAGE_SIZE

pytestmark = pytest.mark.django_db


def record_url(patient):
    return reverse("api:patient_record", args=[patient.pk])


def add_diagnoses(users, patient, n, *, same_time=True):
    base = timezone.now() + dt.timedelta(days=1)
    for i in range(n):
        row = clinic.do_add_diagnosis(
            users["doctor1"], patient, code=f"Z{i:02d}.1", description=f"Paged finding {i:03d}"
        )
        at = base if same_time else base + dt.timedelta(seconds=i)
        Diagnosis.objects.filter(pk=row.pk).update(created_at=at)


def test_the_record_answers_the_newest_slice_of_each_list_with_next_links(
    client_for, users, patients
):
    patient = patients["patient1"]
    add_diagnoses(users, patient, RECORD_PAGE_SIZE + 5, same_time=False)
    body = client_for("doctor1").get(record_url(patient)).json()
    descriptions = [d["description"] for d in body["diagnoses"]]
    assert len(descriptions) == RECORD_PAGE_SIZE
    assert descriptions[0] == f"Paged finding {RECORD_PAGE_SIZE + 4:03d}"
    assert body["next"]["diagnoses"].startswith(f"{record_url(patient)}?section=diagnoses&before=")
    assert body["next"]["prescriptions"] is None
    assert body["next"]["lab_results"] is None


def test_following_next_reads_every_diagnosis_once_even_with_one_timestamp(
    client_for, users, patients
):
    patient = patients["patient1"]
    add_diagnoses(users, patient, 2 * RECORD_PAGE_SIZE + 3)
    client = client_for("doctor1")
    body = client.get(record_url(patient)).json()
    ids = [d["id"] for d in body["diagnoses"]]
    url = body["next"]["diagnoses"]
    while url:
        page = client.get(url)
        assert page.status_code == 200
        ids += [d["id"] for d in page.json()["diagnoses"]]
        url = page.json()["next"]["diagnoses"]
    everything = Diagnosis.objects.filter(patient=patient).order_by("-created_at", "-pk")
    assert ids == [str(pk) for pk in everything.values_list("pk", flat=True)]
    # Every slice is an audited read naming its section.
    reads = AuditEntry.objects.filter(action="phi.read", actor="doctor1").order_by("seq")
    assert [r.details["sections"] for r in reads][1:] == [["diagnoses"]] * 2


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?section=diagnoses&before=not-a-cursor", "before"),
        (f"?before=1.{'a' * 32}", "before"),
        ("?section=notes", "section"),
    ],
)
def test_a_bad_page_request_is_a_json_400(client_for, patients, query, field):
    response = client_for("doctor1").get(record_url(patients["patient1"]) + query)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert not AuditEntry.objects.filter(action="phi.read", actor="doctor1").exists()


def test_another_doctors_patients_slice_is_refused(client_for, patients):
    response = client_for("doctor1").get(record_url(patients["patient3"]) + "?section=diagnoses")
    assert response.status_code == 404
    assert AuditEntry.objects.filter(action="access.denied", actor="doctor1").exists()
