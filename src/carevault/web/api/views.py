"""JSON API, version 1 (``/api/v1/``). Session-authenticated; writes need the CSRF token in an
``X-CSRFToken`` header. The same object-level rules as the web pages apply (``patient_for_user``,
role checks), every refusal is audited, and every PHI read is audited.

========================  ======  ===========================  =================================
URL name                  method  who                          returns
========================  ======  ===========================  =================================
api:me                    GET     anyone logged in             {"username", "role"}
api:patients              GET     doctor                       their care-team patients, paged
api:patient_record        GET     the patient, their doctors   demographics, diagnoses,
                                                               prescriptions, lab results
api:lab_queue             GET     lab technician               pending requests, paged (sample
                                                               codes, no patient identity)
api:patient_notes         POST    doctor with access           {"body": "..."} -> 201 {"id", ...}
========================  ======  ===========================  =================================
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from carevault.web.access import deny, patient_for_user
from carevault.web.accounts.models import Role
from carevault.web.clinic import actions as clinic
from carevault.web.clinic.models import Patient
from carevault.web.labs.actions import result_status
from carevault.web.labs.models import LabRequest, LabRequestStatus, LabResult

from .responses import ApiRequest, api_view, error, json_body, ok, paginate


def _when(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


@api_view(methods=["GET"])
def me(request: ApiRequest) -> HttpResponse:
    return ok({"username": request.user.username, "role": request.user.role})


@api_view(methods=["GET"], roles=[Role.DOCTOR])
def patients(request: ApiRequest) -> HttpResponse:
    """The doctor's care-team patients: names and MRNs are decrypted, so the read is audited."""
    mine = Patient.objects.filter(care_team__doctor=request.user).order_by("created_at", "pk")
    page, facts = paginate(request, mine)
    values = clinic.read_listing(
        request.user, [(p, ("name", "mrn")) for p in page], purpose="api patients", request=request
    )
    results = [
        {"id": str(p.pk), "name": v["name"], "mrn": v["mrn"]}
        for p, v in zip(page, values, strict=True)
    ]
    return ok({"results": results, **facts})


def _lab_results(patient: Patient) -> list[dict[str, Any]]:
    results = []
    lab_results = LabResult.objects.filter(patient=patient).select_related(
        "request", "technician", "signing_key"
    )
    for result in lab_results.prefetch_related("files"):
        values, status = result_status(result)
        results.append(
            {
                "id": str(result.pk),
                "sample_code": result.request.sample_code,
                "test": result.request.unseal_or_none("test"),
                "values": values["values"],
                "comment": values["comment"],
                "technician": result.technician.username,
                "created_at": _when(result.created_at),
                "signature": status,
                "files": [
                    {"id": str(f.pk), "type": f.content_type, "size": f.size}
                    for f in result.files.all()
                ],
            }
        )
    return results


@api_view(methods=["GET"])
def patient_record(request: ApiRequest, patient_id: uuid.UUID) -> HttpResponse:
    if request.user.role not in (Role.DOCTOR, Role.PATIENT):
        deny(
            request,
            reason="role may not read clinical records",
            target_type="clinic.patient",
            target_id=patient_id,
            status=403,
        )
    access = patient_for_user(request, patient_id, purpose="api record")
    # The lab work lives in another app; it is decrypted under the same audited read.
    rec = clinic.read_patient_record(
        request.user,
        access.patient,
        via=access.via,
        request=request,
        include_notes=False,
        extra_sections=["lab_results"],
    )
    labs = _lab_results(access.patient)
    return ok(
        {
            "id": str(access.patient.pk),
            "access": access.via,
            "demographics": rec.demographics,
            "diagnoses": [
                {
                    "id": str(d.pk),
                    "code": values["code"],
                    "description": values["description"],
                    "data_class": d.data_class,
                    "doctor": d.doctor.username,
                    "created_at": _when(d.created_at),
                }
                for d, values in rec.diagnoses
            ],
            "prescriptions": [
                {
                    "id": str(p.pk),
                    "drug": values["drug"],
                    "dose": values["dose"],
                    "instructions": values["instructions"],
                    "doctor": p.doctor.username,
                    "created_at": _when(p.created_at),
                    "signature": status,
                }
                for p, values, status in rec.prescriptions
            ],
            "lab_results": labs,
        }
    )


@api_view(methods=["GET"], roles=[Role.LABTECH])
def lab_queue(request: ApiRequest) -> HttpResponse:
    """Pending requests by sample code: technicians never see who the sample belongs to."""
    pending = LabRequest.objects.filter(status=LabRequestStatus.REQUESTED).order_by(
        "created_at", "pk"
    )
    page, facts = paginate(request, pending)
    values = clinic.read_listing(
        request.user,
        [(r, ("test", "notes")) for r in page],
        purpose="api lab queue",
        request=request,
    )
    results = [
        {"id": str(r.pk), "sample_code": r.sample_code, "test": v["test"], "notes": v["notes"]}
        for r, v in zip(page, values, strict=True)
    ]
    return ok({"results": results, **facts})


@api_view(methods=["POST"], roles=[Role.DOCTOR])
def patient_notes(request: ApiRequest, patient_id: uuid.UUID) -> HttpResponse:
    access = patient_for_user(request, patient_id, purpose="api add note")
    data = json_body(request)
    body = data.get("body")
    if not isinstance(body, str):
        return error("validation_failed", "body is required (a string)", 400, field="body")
    note = clinic.do_add_note(request.user, access.patient, body=body, request=request)
    return ok({"id": str(note.pk), "patient": str(access.patient.pk)}, status=201)


@csrf_exempt  # it does nothing, so a stray POST gets the JSON 404 rather than a CSRF page
def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Unknown API paths answer in JSON too."""
    return error("not_found", "no such API endpoint", 404)
