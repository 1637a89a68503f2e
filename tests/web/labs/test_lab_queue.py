"""The lab technician's queue and request page: the lab sees the sample code and the test, and
nothing of the patient; nobody else may open them."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse
from lab_helpers import latest_audit, patient_identity_strings

from carevault.web.accounts.models import Role, User
from carevault.web.labs import actions as labs
from carevault.web.labs.models import LabRequest, LabRequestStatus, LabResult
from carevault.web.labs.views import PAGE_SIZE

pytestmark = pytest.mark.django_db


def queue_url() -> str:
    return reverse("labs:queue")


def assert_nothing_of_the_patient(html: str) -> None:
    for text in patient_identity_strings():
        assert text not in html, f"patient data on a lab page: {text[:3]}..."


def test_the_queue_shows_sample_code_and_test_but_not_the_patient(client_for, lab_request):
    response = client_for("labtech1").get(queue_url())
    assert response.status_code == 200
    html = response.content.decode()
    assert lab_request.sample_code in html
    assert "Serum ferritin" in html
    assert "Morning sample" in html
    # The demo's one pending request ("Lipid panel" for patient1).
    pending_demo = (
        LabRequest.objects.filter(status=LabRequestStatus.REQUESTED)
        .exclude(pk=lab_request.pk)
        .get()
    )
    assert pending_demo.sample_code in html
    assert "Lipid panel" in html
    assert_nothing_of_the_patient(html)


def test_the_queue_lists_pending_requests_newest_first(client_for, lab_request):
    html = client_for("labtech1").get(queue_url()).content.decode()
    older = LabRequest.objects.filter(status=LabRequestStatus.REQUESTED).exclude(pk=lab_request.pk)
    for other in older:
        assert html.index(lab_request.sample_code) < html.index(other.sample_code)


def test_the_queue_does_not_list_completed_requests_as_pending(client_for):
    response = client_for("labtech1").get(queue_url())
    pending = {row.sample_code for row in response.context["pending_rows"]}
    completed = LabRequest.objects.filter(status=LabRequestStatus.COMPLETED)
    assert completed.exists()
    assert not pending & {r.sample_code for r in completed}


def test_the_queue_shows_twenty_requests_a_page(client_for, users, patients):
    for i in range(PAGE_SIZE + 5):
        labs.do_request_lab_test(users["doctor2"], patients["patient3"], test=f"Test {i}")
    total = LabRequest.objects.filter(status=LabRequestStatus.REQUESTED).count()
    client = client_for("labtech1")
    first = client.get(queue_url())
    second = client.get(queue_url(), {"page": 2})
    assert len(first.context["pending_rows"]) == PAGE_SIZE
    assert len(second.context["pending_rows"]) == total - PAGE_SIZE
    assert first.context["pending_rows"][0].test == f"Test {PAGE_SIZE + 4}"  # newest first
    assert "Page 1 of 2" in first.content.decode()


def test_the_queue_lists_what_this_technician_completed(client_for):
    response = client_for("labtech1").get(queue_url())
    done = [row.sample_code for row, _ in response.context["done_rows"]]
    mine = LabResult.objects.filter(technician__username="labtech1")
    assert sorted(done) == sorted(r.request.sample_code for r in mine)
    html = response.content.decode()
    assert "HbA1c" in html  # a demo test completed by labtech1
    assert_nothing_of_the_patient(html)


def test_another_technician_sees_the_same_queue_but_none_of_labtech1s_results(client, lab_request):
    labtech2 = User.objects.create_user("labtech2", role=Role.LABTECH)
    client.force_login(labtech2)
    response = client.get(queue_url())
    assert lab_request.sample_code in response.content.decode()
    assert response.context["done_rows"] == []


def test_reading_the_queue_is_audited_without_naming_patients(client_for, lab_request):
    client_for("labtech1").get(queue_url())
    entry = latest_audit("phi.read")
    assert entry.actor == "labtech1"
    assert entry.target_type == "labs.queue"
    assert lab_request.sample_code in entry.details["samples"]
    assert entry.patient_id == ""


@pytest.mark.parametrize("username", ["patient1", "doctor1", "admin"])
def test_anyone_but_a_lab_technician_opening_the_queue_gets_403(client_for, username):
    response = client_for(username).get(queue_url())
    assert response.status_code == 403
    entry = latest_audit("access.denied")
    assert entry.actor == username
    assert entry.outcome == "denied"


def test_an_anonymous_visitor_is_sent_to_log_in(client_for):
    response = client_for(None).get(queue_url())
    assert response.status_code == 302
    assert reverse("accounts:login") in response["Location"]


def test_the_request_page_shows_the_test_and_the_form_but_not_the_patient(client_for, lab_request):
    response = client_for("labtech1").get(reverse("labs:request_detail", args=[lab_request.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert lab_request.sample_code in html
    assert "Serum ferritin" in html
    assert 'type="file"' in html
    assert "multiple" in html
    assert 'enctype="multipart/form-data"' in html
    assert_nothing_of_the_patient(html)
    entry = latest_audit("phi.read")
    assert entry.target_id == str(lab_request.pk)
    assert entry.details["via"] == "lab"


@pytest.mark.parametrize("username", ["patient1", "doctor1"])
def test_a_patient_or_doctor_cannot_open_a_lab_request(client_for, lab_request, username):
    url = reverse("labs:request_detail", args=[lab_request.pk])
    assert client_for(username).get(url).status_code == 403
    assert client_for(username).post(url, {"values": "forged"}).status_code == 403
    assert not LabResult.objects.filter(request=lab_request).exists()


def test_an_unknown_request_is_404_and_audited(client_for):
    missing = uuid.uuid4()
    response = client_for("labtech1").get(reverse("labs:request_detail", args=[missing]))
    assert response.status_code == 404
    assert latest_audit("access.denied").target_id == str(missing)


def test_the_lab_technician_nav_links_to_the_queue(client_for):
    html = client_for("labtech1").get(queue_url()).content.decode()
    assert f'href="{queue_url()}"' in html
