"""Users and their roles. A patient's identity (name, date of birth, contact details) is PHI and
lives encrypted on :class:`carevault.web.clinic.models.Patient`; the user row holds only the
login name, which is chosen by the patient and shown to staff."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class Role(models.TextChoices):
    PATIENT = "patient", "Patient"
    DOCTOR = "doctor", "Doctor"
    LABTECH = "labtech", "Lab technician"
    ADMIN = "admin", "Administrator / security officer"


class User(AbstractUser):
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.PATIENT)
    # Staff are addressed by name in the product ("Dr Grey"); that is directory data, not PHI.
    # Patients' names are never stored here.
    display_name = models.CharField(max_length=120, blank=True)

    @property
    def is_patient(self) -> bool:
        return self.role == Role.PATIENT

    @property
    def is_doctor(self) -> bool:
        return self.role == Role.DOCTOR

    @property
    def is_labtech(self) -> bool:
        return self.role == Role.LABTECH

    @property
    def is_officer(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def label(self) -> str:
        return self.display_name or self.username
