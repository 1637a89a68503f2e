"""A PHI column blanked in the database (empty value) shows as "unreadable — tampered" on the
record page and raises the same alert as a bad ciphertext: never shown as a blank value."""

from __future__ import annotations

import pytest
from clinic_helpers import text
from django.urls import reverse

from carevault.web.audit.models import AuditEntry
from carevault.web.clinic.models import ClinicalNote, Patient

pytestmark = pytest.mark.django_db


def _alerts(target_id: object) -> int:
    return AuditEntry.objects.filter(
        action="phi.decryption_failed", outcome="alert", target_id=str(target_id)
    ).count()


def test_a_blanked_note_shows_tampered_and_raises_an_alert(client_for, patients):
    note = ClinicalNote.objects.filter(patient=patients["patient1"]).first()
    ClinicalNote.objects.filter(pk=note.pk).update(body_enc=b"")
    url = reverse("clinic:patient_detail", args=[patients["patient1"].pk])
    page = text(client_for("doctor1").get(url))
    assert "unreadable — tampered" in page
    assert _alerts(note.pk) == 1


def test_a_blanked_optional_email_shows_tampered_and_raises_an_alert(client_for, patients):
    patient = patients["patient1"]
    Patient.objects.filter(pk=patient.pk).update(email_enc=b"")
    url = reverse("clinic:patient_detail", args=[patient.pk])
    page = text(client_for("doctor1").get(url))
    assert "unreadable — tampered" in page
    assert _alerts(patient.pk) >= 1
