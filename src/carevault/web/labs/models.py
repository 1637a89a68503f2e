"""Lab work: requests from doctors, results (values and files) from lab technicians.

Technicians work from a pseudonymous sample code, never the patient's identity."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.db import models, transaction

from carevault import faults
from carevault.crypto import CryptoError
from carevault.security import data_classes
from carevault.security.policy import DataClass
from carevault.web.clinic.models import Patient
from carevault.web.vault import adaptive
from carevault.web.vault.phi import PhiModel

from . import storage

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
        # The record's lab section is read a keyset slice at a time, newest first.
        indexes = [models.Index(fields=["patient", "created_at", "id"], name="labs_request_page")]

    def phi_data_class(self, values: dict[str, str]) -> DataClass:
        # Sensitive when the test's name names a protected category (HIV, genetic, ...); its
        # results and files inherit the class.
        test = values.get("test")
        if test is None:
            test = (self.unseal_or_none("test") or "") if self.test_enc else ""
        return data_classes.of_text(test)


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
        # The API's lab results are read a keyset slice at a time, newest first.
        indexes = [models.Index(fields=["patient", "created_at", "id"], name="labs_result_page")]

    def phi_data_class(self, values: dict[str, str]) -> DataClass:
        return self.request.phi_data_class({})


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

    def phi_data_class(self, values: dict[str, str]) -> DataClass:
        return self.result.request.phi_data_class({})

    def reencrypt_attachments(self, target: Any, reason: str) -> tuple[int, int, int]:
        """The stored file, when its key is sealed below ``target``: written anew under a new
        name, then the record pointed at it only if it still names the old file
        (compare-and-set), then the old file removed *once the caller's transaction commits*:
        until then the committed record still names the old file, and a rollback (or a kill)
        must find it there. A file that does not authenticate stays as it is (a failure)."""
        old = self.storage_name
        try:
            if storage.sealing_suite(old).level >= target.level:
                return 0, 0, 0
            new = storage.reencrypt(self.patient_id, self.pk, old, target)
        except (CryptoError, OSError):
            return 0, 0, 1
        faults.point("reencrypt.file-written")
        if LabFile.objects.filter(pk=self.pk, storage_name=old).update(storage_name=new):
            transaction.on_commit(lambda: storage.remove(old))
            self.storage_name = new
            adaptive.log_reencryption(
                storage.CONTENT_TABLE, self.pk, self.patient_id, target, reason
            )
            return 1, 0, 0
        storage.remove(new)
        return 0, 1, 0
