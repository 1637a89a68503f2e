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

    # Login hardening (issue 4). Consecutive failures and suspension are durable (the database),
    # so they survive restarts and show on the security dashboard; short-lived counters and
    # back-off live in the cache (see login/throttle.py).
    consecutive_failures = models.PositiveIntegerField(default=0)
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspension_reason = models.CharField(max_length=200, blank=True)
    # Bumped to end every session of the user at once ("log out everywhere", security response).
    session_epoch = models.PositiveIntegerField(default=0)
    # TOTP secret, wrapped by the master key (bound to the user); confirmed once enrolment works.
    totp_wrapped = models.BinaryField(blank=True, default=b"")
    totp_confirmed_at = models.DateTimeField(null=True, blank=True)
    # The last TOTP time step accepted, so a code cannot be replayed within its window.
    totp_last_step = models.BigIntegerField(default=0)

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

    @property
    def has_totp(self) -> bool:
        return self.totp_confirmed_at is not None

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


class RecoveryCode(models.Model):
    """A one-time recovery code: only its hash is stored (like a password)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="recovery_codes")
    code_hash = models.CharField(max_length=64)
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
