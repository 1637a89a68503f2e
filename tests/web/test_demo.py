"""The demo seed creates the fixed cast and a clinical history, all of it sealed."""

from __future__ import annotations

from carevault.web.clinic.actions import prescription_status
from carevault.web.clinic.models import Patient, Prescription


def test_the_seed_creates_every_demo_login(users):
    assert set(users) == {
        "admin",
        "doctor1",
        "doctor2",
        "labtech1",
        "patient1",
        "patient2",
        "patient3",
    }


def test_patient_names_decrypt_only_through_the_vault(patients):
    assert patients["patient1"].unseal("name") == "Alice Wonderland-Smith"
    assert b"Alice" not in bytes(patients["patient1"].name_enc)


def test_every_seeded_prescription_verifies(db):
    for p in Prescription.objects.select_related("doctor", "signing_key"):
        assert prescription_status(p, p.unseal_all()) == "valid"


def test_there_are_three_patients(db):
    assert Patient.objects.count() == 3
