"""Lab work: requests from doctors, results (values and files) from lab technicians.

Technicians work from a pseudonymous sample code, never the patient's identity."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from carevault.web.clinic.models import Patient
from carevault.web.vault.phi import PhiModel

User = settings.AUTH_USER_MODEL


def new_sample_code() -> str:
    return "S-" + secrets.token_hex(4).upper()


class LabRequestStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    COMPLETED = "completed", "Completed"


class LabRequest(PhiModel):
    PHI_FIELDS = ("test", "notes")

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="lab_requests")
    requested_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    sample_code = models.CharField(max_length=16, unique=True, default=new_sample_code)
    test_enc = models.BinaryField()
    notes_enc = models.BinaryField(blank=True, default=b"")
    status = models.CharField(
        max_length=16, choices=LabRequestStatus.choices, default=LabRequestStatus.REQUESTED
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class LabResult(PhiModel):
    PHI_FIELDS = ("values", "comment")

    request = models.OneToOneField(LabRequest, on_delete=models.CASCADE, related_name="result")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="lab_results")
    technician = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    values_enc = models.BinaryField()
    comment_enc = models.BinaryField(blank=True, default=b"")
    signature = models.TextField()
    signing_key = models.ForeignKey("vault.ClinicianKey", on_delete=models.PROTECT)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]


class LabFile(PhiModel):
    """An uploaded file, stored encrypted (streaming AEAD) under a random name."""

    PHI_FIELDS = ("filename", "sha256")

    result = models.ForeignKey(LabResult, on_delete=models.CASCADE, related_name="files")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    filename_enc = models.BinaryField()
    content_type = models.CharField(max_length=64)
    size = models.BigIntegerField()
    # The digest of the plaintext is signed with the result; sealed, because equal digests would
    # reveal that two patients share a file.
    sha256_enc = models.BinaryField()
    storage_name = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
