"""Demo data: the fixed cast of users and a small, realistic clinical history.

``DEMO_PHI`` lists every patient-identifying or clinical string the seed writes, so tests can
prove none of them reaches the database, the upload directory or the logs in the clear."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from carevault.web.accounts.models import Role, User
from carevault.web.clinic import actions as clinic
from carevault.web.clinic.models import DataClass, Patient
from carevault.web.labs import actions as labs


@dataclass(frozen=True)
class DemoPatient:
    username: str
    name: str
    birth_date: dt.date
    mrn: str
    email: str
    phone: str
    address: str
    doctor: str
    diagnoses: list[tuple[str, str, DataClass]]
    note: str
    prescription: tuple[str, str, str]
    lab: tuple[str, str, str]


STAFF = [
    ("admin", Role.ADMIN, "Security Officer"),
    ("doctor1", Role.DOCTOR, "Dr Meredith Grey"),
    ("doctor2", Role.DOCTOR, "Dr Gregory House"),
    ("labtech1", Role.LABTECH, "Lab Tech Sam Ortiz"),
]

PATIENTS: list[DemoPatient] = [
    DemoPatient(
        username="patient1",
        name="Alice Wonderland-Smith",
        birth_date=dt.date(1984, 3, 14),
        mrn="MRN-10000001",
        email="alice.smith@example.org",
        phone="+1-555-0101",
        address="12 Rabbit Hole Lane, Springfield",
        doctor="doctor1",
        diagnoses=[("E11.9", "Type 2 diabetes mellitus without complications", DataClass.ORDINARY)],
        note="Patient reports improved glucose control since starting metformin.",
        prescription=(
            "Metformin",
            "500 mg twice daily",
            "Take with meals; review HbA1c in 3 months.",
        ),
        lab=("HbA1c", "HbA1c 6.9 %", "Within target range for this patient."),
    ),
    DemoPatient(
        username="patient2",
        name="Bartholomew Quigley",
        birth_date=dt.date(1971, 11, 2),
        mrn="MRN-10000002",
        email="bart.quigley@example.org",
        phone="+1-555-0102",
        address="7 Lighthouse Road, Shelbyville",
        doctor="doctor1",
        diagnoses=[("F32.1", "Moderate depressive episode", DataClass.SENSITIVE)],
        note="Discussed sleep hygiene; follow-up with psychotherapy referral.",
        prescription=(
            "Sertraline",
            "50 mg once daily",
            "Morning dose; report agitation immediately.",
        ),
        lab=("Thyroid panel", "TSH 2.1 mIU/L", "Normal thyroid function."),
    ),
    DemoPatient(
        username="patient3",
        name="Chiamaka Okonkwo-Berg",
        birth_date=dt.date(1995, 6, 30),
        mrn="MRN-10000003",
        email="chiamaka.ob@example.org",
        phone="+1-555-0103",
        address="99 Harbour View, Capital City",
        doctor="doctor2",
        diagnoses=[("J45.40", "Moderate persistent asthma", DataClass.ORDINARY)],
        note="Peak flow variability noted; inhaler technique reviewed.",
        prescription=("Budesonide inhaler", "200 mcg twice daily", "Rinse mouth after use."),
        lab=("Complete blood count", "Eosinophils 0.6 x10^9/L", "Mild eosinophilia."),
    ),
]

# A minimal, valid one-page PDF (the lab report file of the demo).
DEMO_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
DEMO_PDF_NAME = "lab-report-quigley-thyroid.pdf"


def demo_phi() -> list[str]:
    """Every PHI string the seed writes (for the plaintext scans)."""
    strings: list[str] = [DEMO_PDF_NAME, "Routine follow-up", "Lipid panel", "Fasting sample"]
    for p in PATIENTS:
        strings += [p.name, p.mrn, p.email, p.phone, p.address, p.note, p.birth_date.isoformat()]
        for code, description, _ in p.diagnoses:
            strings += [code, description]
        strings += [*p.prescription, *p.lab]
    return strings


def is_seeded() -> bool:
    return User.objects.filter(username="doctor1").exists()


@transaction.atomic
def seed(password: str) -> dict[str, int]:
    """Create the demo cast and history. Refuses to run twice (it would duplicate people)."""
    if is_seeded():
        raise ValueError("the demo data is already there")
    users: dict[str, User] = {}
    for username, role, display in STAFF:
        user = User(username=username, role=role, display_name=display)
        user.set_password(password)
        user.save()
        users[username] = user
    admin = users["admin"]
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    for i, spec in enumerate(PATIENTS):
        user = User(username=spec.username, role=Role.PATIENT)
        user.set_password(password)
        user.save()
        patient = clinic.do_create_patient(
            admin,
            name=spec.name,
            birth_date=spec.birth_date,
            email=spec.email,
            phone=spec.phone,
            address=spec.address,
            user=user,
            mrn=spec.mrn,
        )
        doctor = users[spec.doctor]
        clinic.do_assign_doctor(admin, doctor, patient)
        for code, description, data_class in spec.diagnoses:
            clinic.do_add_diagnosis(
                doctor, patient, code=code, description=description, data_class=data_class
            )
        clinic.do_add_note(doctor, patient, body=spec.note)
        drug, dose, instructions = spec.prescription
        clinic.do_prescribe(doctor, patient, drug=drug, dose=dose, instructions=instructions)
        test, values, comment = spec.lab
        lab_request = labs.do_request_lab_test(doctor, patient, test=test)
        uploads = (
            [labs.upload_from_bytes(DEMO_PDF_NAME, "application/pdf", DEMO_PDF)] if i == 1 else []
        )
        labs.do_submit_lab_result(
            users["labtech1"], lab_request, values=values, comment=comment, uploads=uploads
        )
        clinic.do_request_appointment(
            user,
            doctor=doctor,
            starts_at=now + dt.timedelta(days=2 + i, hours=1),
            reason="Routine follow-up",
        )
    # One pending lab request, so the lab technician has work waiting.
    first = Patient.objects.get(user__username="patient1")
    labs.do_request_lab_test(users["doctor1"], first, test="Lipid panel", notes="Fasting sample")
    return {"users": User.objects.count(), "patients": Patient.objects.count()}
