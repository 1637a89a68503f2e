"""Who may see a patient's record, fetched and checked in one step (healthchecks'
``_get_patient_for_user``): the patient themself, their care team, or a doctor holding a live
break-the-glass grant. A refusal is audited and answered 404 (:func:`carevault.web.access.deny`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from carevault.web.access import deny

from .models import BreakGlassGrant, CareRelationship, Patient


@dataclass(frozen=True)
class PatientAccess:
    patient: Any
    via: str  # "self", "care-team" or "break-glass"


def patient_for_user(request: HttpRequest, patient_id: Any, *, purpose: str) -> PatientAccess:
    """The patient, if this user may see their clinical record; otherwise audit and 404."""
    patient = Patient.objects.filter(pk=patient_id).first()
    via = access_route(request.user, patient) if patient is not None else ""
    if not via:
        deny(
            request,
            reason=f"no access to patient for {purpose}",
            target_type="clinic.patient",
            target_id=patient_id,
        )
    return PatientAccess(patient, via)


def access_route(user: Any, patient: Any) -> str:
    """How ``user`` may see ``patient``'s record ("self", "care-team", "break-glass"), or "".

    The rule itself, without auditing: callers that refuse must audit (patient_for_user does).
    """
    if getattr(user, "is_patient", False) and patient.user_id == user.pk:
        return "self"
    if getattr(user, "is_doctor", False):
        if CareRelationship.objects.filter(doctor_id=user.pk, patient=patient).exists():
            return "care-team"
        if BreakGlassGrant.objects.filter(
            doctor_id=user.pk, patient=patient, revoked=False, expires_at__gt=timezone.now()
        ).exists():
            return "break-glass"
    return ""
