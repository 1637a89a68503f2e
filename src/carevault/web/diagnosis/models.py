"""Diagnosis runs kept in the patient's record (issue 7): what went in and what the doctor was
shown, sealed under the patient's key like every other PHI value. In the clear only what the
system needs: who ran it for which patient, and when."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from carevault.web.clinic.models import Patient
from carevault.web.vault.phi import PhiModel


class DiagnosisRun(PhiModel):
    # inputs: the 30 features as JSON; result: label, released confidence, model name, kind and
    # version, explanation, client kind, as JSON (what was released, never more).
    PHI_FIELDS = ("inputs", "result")

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="diagnosis_runs")
    doctor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    inputs_enc = models.BinaryField()
    result_enc = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class ClientCutOff(models.Model):
    """A diagnosis client the extraction monitor cut off (issue 7). Kept in the database so the
    cut-off holds in every app server and across restarts, until a security officer lifts it.
    ``client`` names the account and client kind ("api:12"), never a query."""

    client = models.CharField(max_length=64, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=200)
    at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-at", "-pk"]
