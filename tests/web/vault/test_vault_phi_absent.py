"""Empty or missing ciphertexts are tampering: every PHI column always holds a ciphertext, an
absent optional value included (sealed as an authenticated empty string)."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps

from carevault.crypto import DecryptionError
from carevault.web.audit.models import AuditEntry
from carevault.web.clinic.models import Appointment, Patient
from carevault.web.labs.models import LabRequest, LabResult
from carevault.web.vault.absent import seal_empty_columns
from carevault.web.vault.context import SYSTEM_WRITE
from carevault.web.vault.phi import PhiModel


def _alerts(row: PhiModel) -> list[dict[str, Any]]:
    return list(
        AuditEntry.objects.filter(action="phi.decryption_failed", target_id=str(row.pk)).values(
            "outcome", "details"
        )
    )


def _phi_models() -> list[type[PhiModel]]:
    return [m for m in apps.get_models() if issubclass(m, PhiModel)]


def test_every_phi_column_of_every_seeded_row_holds_a_ciphertext(db):
    for model in _phi_models():
        for row in model.objects.all():
            for column in model.PHI_FIELDS:
                assert bytes(getattr(row, f"{column}_enc")), (model.__name__, column)
                assert row.unseal_or_none(column) is not None, (model.__name__, column)


@pytest.mark.parametrize("value", [b"", None])
def test_a_blanked_required_column_reads_as_tampered_and_raises_an_alert(patients, value):
    patient = patients["patient1"]
    Patient.objects.filter(pk=patient.pk).update(name_enc=value or b"")
    fresh = Patient.objects.get(pk=patient.pk)
    if value is None:
        fresh.name_enc = None
    assert fresh.unseal_or_none("name") is None
    assert _alerts(fresh) == [
        {"outcome": "alert", "details": {"column": "name"}},
    ]


def test_a_blanked_optional_column_reads_as_tampered_and_raises_an_alert(patients):
    patient = patients["patient1"]
    Patient.objects.filter(pk=patient.pk).update(phone_enc=b"")
    fresh = Patient.objects.get(pk=patient.pk)
    assert fresh.unseal_or_none("phone") is None
    assert len(_alerts(fresh)) == 1


def test_a_new_row_without_an_optional_value_stores_an_authenticated_absent(patients):
    appointment = Appointment(
        patient=patients["patient1"],
        doctor=patients["patient1"].user,
        starts_at="2030-01-01T09:00:00Z",
    )
    appointment.save()
    stored = Appointment.objects.get(pk=appointment.pk)
    assert bytes(stored.reason_enc) != b""
    assert stored.unseal("reason") == ""


def test_an_update_never_seals_a_blanked_column_as_absent(patients):
    patient = Patient.objects.get(pk=patients["patient1"].pk)
    patient.email_enc = b""  # blanked by someone with write access to the table
    patient.seal(SYSTEM_WRITE, phone="+1-555-0199")
    patient.save()
    stored = Patient.objects.get(pk=patient.pk)
    assert bytes(stored.email_enc) == b""
    assert stored.unseal_or_none("email") is None


def test_the_migration_seals_rows_left_empty_before_the_rule_so_they_still_read(patients):
    request = LabRequest.objects.first()
    LabRequest.objects.filter(pk=request.pk).update(notes_enc=b"")
    LabResult.objects.update(comment_enc=b"")
    sealed = seal_empty_columns(apps, "labs", "LabRequest", ("notes",), "patient_id")
    sealed += seal_empty_columns(apps, "labs", "LabResult", ("comment",), "patient_id")
    assert sealed == 1 + LabResult.objects.count()
    assert LabRequest.objects.get(pk=request.pk).unseal("notes") == ""
    for result in LabResult.objects.all():
        assert result.unseal("comment") == ""


def test_sealing_absent_values_twice_changes_nothing(patients):
    assert seal_empty_columns(apps, "clinic", "Patient", ("email", "phone", "address"), "pk") == 0


def test_a_missing_column_value_raises_the_opaque_decryption_error(patients):
    patient = patients["patient2"]
    patient.mrn_enc = None
    with pytest.raises(DecryptionError):
        patient.unseal("mrn")
