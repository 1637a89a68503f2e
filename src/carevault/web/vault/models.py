"""Wrapped keys in the database. Nothing here is usable without the master key, which is never
stored in the database."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class PatientKey(models.Model):
    """A patient's data keyring, wrapped by the master key (bound to ``patient:<id>``)."""

    patient_id = models.UUIDField(primary_key=True)
    wrapped = models.BinaryField()
    # Encryptions under the current primary, counted across processes (GCM nonce budget).
    encryptions = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)


class ServiceSecret(models.Model):
    """Server-wide secrets (audit chain key, blind-index root key), wrapped by the master key."""

    name = models.CharField(max_length=64, primary_key=True)
    wrapped = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)


class ClinicianKey(models.Model):
    """A clinician's signing key: the public half in the clear, the private half wrapped."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="signing_keys"
    )
    algorithm = models.CharField(max_length=32)
    key_id = models.CharField(max_length=32, unique=True)
    public_key = models.BinaryField()
    wrapped_private = models.BinaryField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)


class EncryptionDecision(models.Model):
    """Why a record is encrypted the way it is: the adaptive policy's last decision for it
    (issue 6), shown per record in the security dashboard. Holds request metadata only (role,
    risk, size, load), never patient data: the row names the record by table and id."""

    table = models.CharField(max_length=64)
    row = models.CharField(max_length=64)
    patient_id = models.UUIDField(null=True, blank=True)
    suite = models.CharField(max_length=40)
    source = models.CharField(max_length=16)  # model | floor | fallback | reencrypt
    reason = models.CharField(max_length=300)
    floor = models.CharField(max_length=40)
    proposed = models.CharField(max_length=40, blank=True)
    inputs = models.JSONField(default=dict)
    decided_at = models.DateTimeField()

    class Meta:
        ordering = ["-decided_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["table", "row"], name="one_decision_per_record")
        ]
        indexes = [models.Index(fields=["suite"]), models.Index(fields=["decided_at"])]


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    SUPERSEDED = "superseded", "Superseded"  # a higher floor's job took over


class ReencryptionJob(models.Model):
    """Re-encrypting stored records and files that sit below a raised floor, in the background.

    Resumable: the job keeps a cursor per table (records are visited in primary-key order) and
    its counters, saved after every batch, so a killed worker's successor starts where the last
    saved batch ended; records already at the floor are skipped on the way. One worker at a time
    holds the lease (``lease_owner`` until ``lease_until``)."""

    target_suite = models.CharField(max_length=40)
    reason = models.CharField(max_length=300)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    progress = models.JSONField(default=dict)  # table -> {"cursor": pk, "done": bool}
    total = models.PositiveIntegerField(default=0)  # records to visit, counted at the start
    scanned = models.PositiveIntegerField(default=0)
    reencrypted = models.PositiveIntegerField(default=0)  # values and files moved up
    conflicts = models.PositiveIntegerField(default=0)  # changed meanwhile: left to the writer
    failures = models.PositiveIntegerField(default=0)  # did not authenticate: left as they are
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    @property
    def percent(self) -> int:
        if self.status == JobStatus.DONE:
            return 100
        return min(99, int(100 * self.scanned / self.total)) if self.total else 0
