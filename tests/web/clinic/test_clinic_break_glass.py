"""Break-the-glass: emergency access to a patient who is not the doctor's."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from clinic_helpers import entries, text
from django.urls import reverse
from django.utils import timezone

from carevault.web.audit.log import Outcome
from carevault.web.clinic.models import BreakGlassGrant

pytestmark = pytest.mark.django_db

REASON = "Unconscious in the emergency department, allergy history needed now."


def urls(patient):
    return (
        reverse("clinic:break_glass", args=[patient.pk]),
        reverse("clinic:patient_detail", args=[patient.pk]),
    )


def test_break_glass_with_a_short_reason_is_refused_inline(client_for, patients):
    patient3 = patients["patient3"]
    glass, detail = urls(patient3)
    client = client_for("doctor1")
    response = client.post(glass, {"reason": "urgent"})
    assert response.status_code == 400
    assert "15 characters or more" in text(response)
    assert "Chiamaka" not in text(response)
    assert not BreakGlassGrant.objects.filter(patient=patient3).exists()
    assert not entries("breakglass.open")
    assert client.get(detail).status_code == 404


def test_break_glass_with_no_reason_is_refused_inline(client_for, patients):
    glass, _ = urls(patients["patient3"])
    response = client_for("doctor1").post(glass, {"reason": ""})
    assert response.status_code == 400
    assert "This field is required" in text(response)
    assert not BreakGlassGrant.objects.exists()


def test_break_glass_with_a_real_reason_opens_the_record_and_raises_an_alert(
    client_for, users, patients
):
    patient3 = patients["patient3"]
    glass, detail = urls(patient3)
    client = client_for("doctor1")
    response = client.post(glass, {"reason": REASON})
    assert response.status_code == 302
    assert response["Location"] == detail

    grant = BreakGlassGrant.objects.get(doctor=users["doctor1"], patient=patient3)
    assert grant.active
    assert REASON.encode() not in bytes(grant.reason_enc)
    (opened,) = entries("breakglass.open", actor="doctor1")
    assert opened.outcome == Outcome.ALERT
    assert opened.patient_id == str(patient3.pk)

    page = client.get(detail)
    assert page.status_code == 200
    assert "Chiamaka Okonkwo-Berg" in text(page)
    assert "Emergency access (break-glass)" in text(page)
    assert grant.expires_at.strftime("%H:%M") in text(page)
    (read,) = entries("phi.read", actor="doctor1")
    assert read.outcome == Outcome.ALERT
    assert read.details["via"] == "break-glass"


def test_a_doctor_on_the_care_team_sees_no_break_glass_banner(client_for, patients):
    _, detail = urls(patients["patient1"])
    assert "Emergency access" not in text(client_for("doctor1").get(detail))


def test_an_expired_grant_no_longer_opens_the_record(client_for, patients):
    patient3 = patients["patient3"]
    glass, detail = urls(patient3)
    client = client_for("doctor1")
    client.post(glass, {"reason": REASON})
    BreakGlassGrant.objects.filter(patient=patient3).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert client.get(detail).status_code == 404


def test_a_revoked_grant_no_longer_opens_the_record(client_for, patients):
    patient3 = patients["patient3"]
    glass, detail = urls(patient3)
    client = client_for("doctor1")
    client.post(glass, {"reason": REASON})
    BreakGlassGrant.objects.filter(patient=patient3).update(revoked=True)
    assert client.get(detail).status_code == 404


def test_break_glass_for_an_unknown_patient_is_a_404_and_audited(client_for):
    missing = uuid.uuid4()
    response = client_for("doctor1").post(
        reverse("clinic:break_glass", args=[missing]), {"reason": REASON}
    )
    assert response.status_code == 404
    (denied,) = entries("access.denied", actor="doctor1")
    assert denied.target_id == str(missing)


@pytest.mark.parametrize("username", ["patient1", "labtech1", "admin"])
def test_only_doctors_may_break_the_glass(client_for, patients, username):
    glass, _ = urls(patients["patient3"])
    assert client_for(username).post(glass, {"reason": REASON}).status_code == 403
    assert not BreakGlassGrant.objects.exists()


def test_break_glass_takes_only_post(client_for, patients):
    glass, _ = urls(patients["patient3"])
    assert client_for("doctor1").get(glass).status_code == 405


def test_the_doctor_home_lists_active_emergency_access(client_for, patients):
    glass, detail = urls(patients["patient3"])
    client = client_for("doctor1")
    client.post(glass, {"reason": REASON})
    page = text(client.get(reverse("clinic:doctor_home")))
    assert "Chiamaka Okonkwo-Berg" in page
    assert detail in page
