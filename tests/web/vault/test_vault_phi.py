"""PhiModel: PHI columns hold envelopes bound to table / column / row / patient."""

from __future__ import annotations

import pytest

from carevault.crypto import DecryptionError
from carevault.web.clinic.models import ClinicalNote, Diagnosis, Patient
from carevault.web.vault.context import SYSTEM_WRITE


def test_every_phi_column_of_a_seeded_patient_is_sealed(patients):
    patient = patients["patient1"]
    expected = {
        "name": "Alice Wonderland-Smith",
        "birth_date": "1984-03-14",
        "mrn": "MRN-10000001",
        "email": "alice.smith@example.org",
        "phone": "+1-555-0101",
        "address": "12 Rabbit Hole Lane, Springfield",
    }
    assert patient.unseal_all() == expected
    for column, value in expected.items():
        assert value.encode() not in bytes(getattr(patient, f"{column}_enc"))


def test_sealing_an_unknown_field_is_refused(patients):
    with pytest.raises(ValueError, match="no PHI field"):
        patients["patient1"].seal(SYSTEM_WRITE, user="someone")


def test_sealing_returns_how_many_fields_were_encrypted(patients):
    note = ClinicalNote(patient=patients["patient1"], author=patients["patient1"].user)
    assert note.seal(SYSTEM_WRITE, body="text") == 1


def test_an_empty_optional_column_is_tampering_not_blank(patients):
    patient = patients["patient1"]
    patient.phone_enc = b""
    with pytest.raises(DecryptionError):
        patient.unseal("phone")


def test_a_ciphertext_moved_to_another_column_does_not_open(patients):
    patient = patients["patient1"]
    patient.email_enc = patient.name_enc
    with pytest.raises(DecryptionError):
        patient.unseal("email")
    assert patient.unseal_or_none("email") is None


def test_a_ciphertext_moved_to_another_row_of_the_same_patient_does_not_open(patients):
    patient = patients["patient1"]
    diagnosis = Diagnosis.objects.filter(patient=patient).first()
    second = Diagnosis(patient=patient, doctor=diagnosis.doctor)
    second.description_enc = diagnosis.description_enc
    assert second.unseal_or_none("description") is None


def test_a_ciphertext_moved_to_another_patient_does_not_open(patients):
    alice, bart = patients["patient1"], patients["patient2"]
    bart.name_enc = alice.name_enc
    assert bart.unseal_or_none("name") is None


def test_a_flipped_bit_reads_as_tampered(patients):
    patient = patients["patient3"]
    sealed = bytearray(bytes(patient.name_enc))
    sealed[-1] ^= 1
    patient.name_enc = bytes(sealed)
    assert patient.unseal_or_none("name") is None
    assert patient.unseal_all()["mrn"] == "MRN-10000003"


def test_a_patient_seals_under_its_own_id(patients):
    # The patient row is its own patient: phi_patient_id is the primary key, not a foreign key.
    patient = Patient.objects.get(pk=patients["patient2"].pk)
    assert patient.phi_patient_id() == patient.pk
