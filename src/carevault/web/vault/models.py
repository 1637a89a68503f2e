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
