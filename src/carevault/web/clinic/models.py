"""Clinical records. Every PHI value is sealed (see :mod:`carevault.web.vault.phi`); what stays
in the clear is what the system needs to work: identifiers (random UUIDs), which doctor and
patient a row links, appointment times and statuses, record kinds and creation times."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from carevault.security import data_classes
from carevault.security.policy import DataClass as PolicyDataClass
from carevault.web.vault.phi import PhiModel

User = settings.AUTH_USER_MODEL


class DataClass(models.TextChoices):
    ORDINARY = "ordinary", "Ordinary"
    SENSITIVE = "sensitive", "Sensitive (mental health, HIV, genetic)"


class Patient(PhiModel):
    PHI_FIELDS = ("name", "birth_date", "mrn", "email", "phone", "address")

    user = models.OneToOneField(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="patient"
    )
    name_enc = models.BinaryField()
    birth_date_enc = models.BinaryField()
    mrn_enc = models.BinaryField()
    email_enc = models.BinaryField(blank=True, default=b"")
    phone_enc = models.BinaryField(blank=True, default=b"")
    address_enc = models.BinaryField(blank=True, default=b"")
    # Blind indexes (truncated keyed HMACs) for exact-match search; not unique, by design.
    mrn_index = models.CharField(max_length=16, db_index=True)
    email_index = models.CharField(max_length=16, db_index=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def phi_patient_id(self) -> Any:
        return self.pk


class CareRelationship(models.Model):
    """A doctor treats a patient: the basis of a doctor's access to a record."""

    doctor = models.ForeignKey(User, on_delete=models.PROTECT, related_name="care_relationships")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="care_team")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["doctor", "patient"], name="unique_care_relationship")
        ]


class Diagnosis(PhiModel):
    PHI_FIELDS = ("code", "description")

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="diagnoses")
    doctor = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    data_class = models.CharField(
        max_length=16, choices=DataClass.choices, default=DataClass.ORDINARY
    )
    code_enc = models.BinaryField()
    description_enc = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        # The record's sections are read a keyset slice at a time, newest first (paging.py).
        indexes = [
            models.Index(fields=["patient", "created_at", "id"], name="clinic_diagnosis_page")
        ]

    def phi_data_class(self, values: dict[str, str]) -> PolicyDataClass:
        # Sensitive when the doctor says so or when the code is in a protected ICD-10 range.
        marked = PolicyDataClass(self.data_class)
        return data_classes.strongest(marked, data_classes.of_icd10(values.get("code", "")))


class ClinicalNote(PhiModel):
    PHI_FIELDS = ("body",)

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    body_enc = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        # The record's sections are read a keyset slice at a time, newest first (paging.py).
        indexes = [models.Index(fields=["patient", "created_at", "id"], name="clinic_note_page")]


class Prescription(PhiModel):
    PHI_FIELDS = ("drug", "dose", "instructions")

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="prescriptions")
    doctor = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    drug_enc = models.BinaryField()
    dose_enc = models.BinaryField()
    instructions_enc = models.BinaryField()
    signature = models.TextField()
    signing_key = models.ForeignKey("vault.ClinicianKey", on_delete=models.PROTECT)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        # The record's sections are read a keyset slice at a time, newest first (paging.py).
        indexes = [
            models.Index(fields=["patient", "created_at", "id"], name="clinic_prescription_page")
        ]


class AppointmentStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    CONFIRMED = "confirmed", "Confirmed"
    DECLINED = "declined", "Declined"
    CANCELLED = "cancelled", "Cancelled"


class Appointment(PhiModel):
    PHI_FIELDS = ("reason",)

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="appointments")
    doctor = models.ForeignKey(User, on_delete=models.PROTECT, related_name="appointments")
    # In the clear: scheduling needs to query and order by time (see docs/threat-model.md).
    starts_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=AppointmentStatus.choices, default=AppointmentStatus.REQUESTED
    )
    reason_enc = models.BinaryField(blank=True, default=b"")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["starts_at"]
        # The record's sections are read a keyset slice at a time, newest first (paging.py).
        indexes = [
            models.Index(fields=["patient", "starts_at", "id"], name="clinic_appointment_page")
        ]


class BreakGlassGrant(PhiModel):
    """Emergency access of a doctor to a patient who is not theirs: time-limited, audited."""

    PHI_FIELDS = ("reason",)

    doctor = models.ForeignKey(User, on_delete=models.PROTECT, related_name="break_glass")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="break_glass")
    reason_enc = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]

    @property
    def active(self) -> bool:
        return not self.revoked and self.expires_at > timezone.now()
