"""A row's PHI fields sealed and opened with the row's context encoded once (service.PhiRow,
used by PhiModel.seal / unseal): byte-compatible with the single-field service.seal /
open_text, bound to table / column / row / patient, one opaque error for every failure."""

from __future__ import annotations

import pytest

from carevault.crypto import DecryptionError, Suite
from carevault.crypto.envelope import key_id_of
from carevault.web.clinic.models import ClinicalNote, Patient
from carevault.web.vault import service
from carevault.web.vault.context import SYSTEM_WRITE


@pytest.fixture(autouse=True)
def _fresh_caches():
    service.reset_caches()
    yield
    service.reset_caches()


def test_what_a_row_seals_opens_with_the_single_field_service(patients):
    patient = patients["patient1"]
    row = service.PhiRow(patient.pk, "clinic_note", "row-1")
    sealed = {column: row.seal(column, f"{column} text") for column in ("body", "title")}
    for column, envelope in sealed.items():
        assert service.open_text(patient.pk, "clinic_note", column, "row-1", envelope) == (
            f"{column} text"
        )


def test_what_the_single_field_service_seals_opens_with_a_row(patients):
    patient = patients["patient1"]
    sealed = service.seal(patient.pk, "clinic_note", "body", "row-1", "secret words")
    row = service.PhiRow(patient.pk, "clinic_note", "row-1")
    assert row.open_text("body", sealed) == "secret words"
    assert row.open_text("body", memoryview(sealed)) == "secret words"


def test_a_row_seals_under_the_suite_the_policy_chose(patients):
    patient = patients["patient1"]
    row = service.PhiRow(patient.pk, "clinic_note", "row-1")
    weak = row.seal("body", "x", suite=Suite.AES_128_GCM)
    strong = row.seal("title", "y")
    assert weak[3] == Suite.AES_128_GCM.suite_id
    assert key_id_of(weak) != key_id_of(strong)
    assert service.open_text(patient.pk, "clinic_note", "body", "row-1", weak) == "x"
    assert row.open_text("title", strong) == "y"


@pytest.mark.parametrize(
    ("table", "column", "row_id", "patient"),
    [
        ("clinic_other", "body", "row-1", "patient1"),
        ("clinic_note", "title", "row-1", "patient1"),
        ("clinic_note", "body", "row-2", "patient1"),
        ("clinic_note", "body", "row-1", "patient2"),
    ],
    ids=["table", "column", "row", "patient"],
)
def test_a_field_moved_anywhere_else_does_not_open(patients, table, column, row_id, patient):
    sealed = service.PhiRow(patients["patient1"].pk, "clinic_note", "row-1").seal("body", "s")
    elsewhere = service.PhiRow(patients[patient].pk, table, row_id)
    with pytest.raises(DecryptionError) as excinfo:
        elsewhere.open_text(column, sealed)
    assert str(excinfo.value) == "decryption failed"


def test_a_model_seals_all_its_fields_as_the_single_field_service_would_read_them(patients):
    patient = Patient.objects.get(pk=patients["patient1"].pk)
    patient.seal(SYSTEM_WRITE, email="new@example.org", phone="+1-555-0199")
    for column, value in (("email", "new@example.org"), ("phone", "+1-555-0199")):
        sealed = getattr(patient, f"{column}_enc")
        assert service.open_text(patient.pk, "clinic_patient", column, patient.pk, sealed) == value
    assert patient.unseal_all()["phone"] == "+1-555-0199"


def test_a_new_rows_absent_fields_are_sealed_by_its_row(patients):
    patient = patients["patient1"]
    note = ClinicalNote(patient=patient, author=patient.user)
    note.save()
    assert note.unseal("body") == ""
    table = ClinicalNote._meta.db_table
    assert service.open_text(patient.pk, table, "body", note.pk, note.body_enc) == ""


def test_one_tampered_field_does_not_hide_the_others(patients):
    patient = Patient.objects.get(pk=patients["patient2"].pk)
    patient.email_enc = patient.name_enc
    values = patient.unseal_all()
    assert values["email"] is None
    assert values["name"] is not None


def test_a_shredded_patient_reads_as_tampered_through_a_row(patients):
    patient = Patient.objects.get(pk=patients["patient3"].pk)
    service.shred_patient(patient.pk)
    service.reset_caches()
    assert set(patient.unseal_all().values()) == {None}
