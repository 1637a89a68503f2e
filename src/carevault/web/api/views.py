"""JSON API, version 1 (``/api/v1/``). Session-authenticated; writes need the CSRF token in an
``X-CSRFToken`` header. The same object-level rules as the web pages apply (``patient_for_user``,
role checks), every refusal is audited, and every PHI read is audited.

========================  ======  ===========================  =================================
URL name                  method  who                          returns
========================  ======  ===========================  =================================
api:me                    GET     anyone logged in             {"username", "role"}
api:patients              GET     doctor                       their care-team patients, paged
api:patient_record        GET     the patient, their doctors   demographics and the newest
                                                               diagnoses, prescriptions, lab
                                                               results (20 each) with "next"
                                                               links: ?section=&before= pages
api:lab_queue             GET     lab technician               pending requests, paged (sample
                                                               codes, no patient identity)
api:patient_notes         POST    doctor with access           {"body": "..."} -> 201 {"id", ...}
api:patient_diagnoses     POST    doctor with access           {"features": {name: number} or
                                                               [30 numbers], "model"} -> 201
                                                               {"id", "label", "model", ...}
api:diagnosis_homomorphic POST    doctor                       an encrypted CKKS request
                                                               (application/octet-stream) ->
                                                               the encrypted score
========================  ======  ===========================  =================================
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from carevault.modelguard import homomorphic
from carevault.modelguard.budgets import BudgetExceeded
from carevault.modelguard.diagnosis import DiagnosisUnavailable
from carevault.modelguard.guard import ClientKind
from carevault.web.access import deny
from carevault.web.accounts.models import Role
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo
from carevault.web.clinic import actions as clinic
from carevault.web.clinic.access import patient_for_user
from carevault.web.clinic.models import Patient
from carevault.web.clinic.paging import RECORD_PAGE_SIZE, Cursor, Slice, keyset
from carevault.web.diagnosis import actions as diagnosis
from carevault.web.diagnosis import serving as diagnosis_serving
from carevault.web.errors import ValidationFailed
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
        request.user,
        [(p, ("name", "mrn")) for p in page],
        purpose="api patients",
        client=ClientInfo.from_request(request),
    )
    results = [
        {"id": str(p.pk), "name": v["name"], "mrn": v["mrn"]}
        for p, v in zip(page, values, strict=True)
    ]
    return ok({"results": results, **facts})


def _lab_result(result: LabResult) -> dict[str, Any]:
    values, status = result_status(result)
    return {
        "id": str(result.pk),
        "sample_code": result.request.sample_code,
        "test": result.request.unseal_or_none("test"),
        "values": values["values"],
        "comment": values["comment"],
        "technician": result.technician.username,
        "created_at": _when(result.created_at),
        "signature": status,
        "files": [
            {"id": str(f.pk), "type": f.content_type, "size": f.size} for f in result.files.all()
        ],
    }


def _lab_results(
    patient: Patient, before: Cursor | None, limit: int = RECORD_PAGE_SIZE
) -> Slice[dict[str, Any]]:
    """A slice of the patient's lab results, newest first: only these are decrypted."""
    rows, more = keyset(
        LabResult.objects.filter(patient=patient)
        .select_related("request", "technician", "signing_key")
        .prefetch_related("files"),
        before,
        limit=limit,
    )
    return Slice([_lab_result(r) for r in rows], more)


def _diagnosis(d: Any, values: dict[str, str | None]) -> dict[str, Any]:
    return {
        "id": str(d.pk),
        "code": values["code"],
        "description": values["description"],
        "data_class": d.data_class,
        "doctor": d.doctor.username,
        "created_at": _when(d.created_at),
    }


def _prescription(p: Any, values: dict[str, str | None], status: str) -> dict[str, Any]:
    return {
        "id": str(p.pk),
        "drug": values["drug"],
        "dose": values["dose"],
        "instructions": values["instructions"],
        "doctor": p.doctor.username,
        "created_at": _when(p.created_at),
        "signature": status,
    }


def _diagnoses(patient: Patient, before: Cursor | None, limit: int) -> Slice[dict[str, Any]]:
    part = clinic.read_diagnoses(patient, before, limit)
    return Slice([_diagnosis(d, v) for d, v in part.rows], part.next)


def _prescriptions(patient: Patient, before: Cursor | None, limit: int) -> Slice[dict[str, Any]]:
    part = clinic.read_prescriptions(patient, before, limit)
    return Slice([_prescription(p, v, s) for p, v, s in part.rows], part.next)


# The record's lists, each read a slice at a time: ?section=<name>&before=<cursor>.
RECORD_SECTIONS: dict[str, clinic.SectionReader] = {
    "diagnoses": _diagnoses,
    "prescriptions": _prescriptions,
    "lab_results": _lab_results,
}


def _next(patient: Patient, section: str, cursor: Cursor | None) -> str | None:
    if cursor is None:
        return None
    url = reverse("api:patient_record", args=[patient.pk])
    return f"{url}?{urlencode({'section': section, 'before': str(cursor)})}"


@api_view(methods=["GET"])
def patient_record(request: ApiRequest, patient_id: uuid.UUID) -> HttpResponse:
    """The record's demographics and the first slice (newest first, at most RECORD_PAGE_SIZE)
    of each list, with ``next``: by list, the URL of its next slice or null. ``?section=<list>``
    (``&before=<cursor>``, as ``next`` gives it) answers one slice of one list instead."""
    if request.user.role not in (Role.DOCTOR, Role.PATIENT):
        deny(
            request,
            reason="role may not read clinical records",
            target_type="clinic.patient",
            target_id=patient_id,
            status=403,
        )
    access = patient_for_user(request, patient_id, purpose="api record")
    patient = access.patient
    section = request.GET.get("section")
    before = Cursor.parse(request.GET.get("before"))
    head = {"id": str(patient.pk), "access": access.via}
    client = ClientInfo.from_request(request)
    if section is not None:
        if section not in RECORD_SECTIONS:
            raise ValidationFailed(
                f"section must be one of {', '.join(RECORD_SECTIONS)}", field="section"
            )
        part = clinic.read_record_section(
            request.user,
            patient,
            RECORD_SECTIONS[section],
            via=access.via,
            sections=(section,),
            before=before,
            client=client,
        )
        return ok(
            {**head, section: part.rows, "next": {section: _next(patient, section, part.next)}}
        )
    if before is not None:
        raise ValidationFailed("before needs section (follow a next link)", field="before")
    # The lab work lives in another app; it is decrypted under the same audited read.
    rec = clinic.read_patient_record(
        request.user,
        patient,
        via=access.via,
        client=client,
        include_notes=False,
        extra_sections=["lab_results"],
    )
    labs = _lab_results(patient, None)
    return ok(
        {
            **head,
            "demographics": rec.demographics,
            "diagnoses": [_diagnosis(d, values) for d, values in rec.diagnoses],
            "prescriptions": [_prescription(p, v, status) for p, v, status in rec.prescriptions],
            "lab_results": labs.rows,
            "next": {
                "diagnoses": _next(patient, "diagnoses", rec.more["diagnoses"]),
                "prescriptions": _next(patient, "prescriptions", rec.more["prescriptions"]),
                "lab_results": _next(patient, "lab_results", labs.next),
            },
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
        client=ClientInfo.from_request(request),
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
    note = clinic.do_add_note(
        request.user, access.patient, body=body, client=ClientInfo.from_request(request)
    )
    return ok({"id": str(note.pk), "patient": str(access.patient.pk)}, status=201)


@api_view(methods=["POST"], roles=[Role.DOCTOR])
def patient_diagnoses(request: ApiRequest, patient_id: uuid.UUID) -> HttpResponse:
    """Run a diagnosis for the patient and keep it in the record. API clients get the label
    and which features drove it, never a confidence (see docs/models-extraction.md)."""
    access = patient_for_user(request, patient_id, purpose="api diagnosis")
    data = json_body(request)
    features = data.get("features")
    if not isinstance(features, dict | list):
        return error(
            "validation_failed",
            "features is required: an object of the 30 named features or a list of 30 numbers",
            400,
            field="features",
        )
    model = data.get("model", "logistic")
    if not isinstance(model, str):
        return error("validation_failed", "model must be a string", 400, field="model")
    try:
        run, released = diagnosis.do_run_diagnosis(
            request.user,
            access.patient,
            features,
            model=model,
            client_kind=ClientKind.API,
            client=ClientInfo.from_request(request),
        )
    except diagnosis.TooManyQueries as exc:
        response = error(exc.code, exc.message, exc.status)
        response["Retry-After"] = str(exc.retry_after)
        return response
    return ok({"id": str(run.pk), "patient": str(access.patient.pk), **released.as_dict()}, 201)


@api_view(methods=["POST"], roles=[Role.DOCTOR])
def diagnosis_homomorphic(request: ApiRequest) -> HttpResponse:
    """Score encrypted patients with the served logistic model: the request holds a key-less
    CKKS context and the encrypted features (``carevault.modelguard.homomorphic_client``), the
    reply the encrypted score only the client can decrypt. The server sees neither."""
    if request.content_type != "application/octet-stream":
        return error("validation_failed", "send the request as application/octet-stream", 400)
    # Read from the stream, not request.body: an encrypted batch is larger than the limit on
    # form posts (DATA_UPLOAD_MAX_MEMORY_SIZE), and has a bound of its own.
    body = request.read(homomorphic.MAX_REQUEST_BYTES + 1)
    if len(body) > homomorphic.MAX_REQUEST_BYTES:
        return error("validation_failed", "the request is too large", 413)
    try:
        version, form = diagnosis_serving.homomorphic_model()
    except DiagnosisUnavailable as exc:
        return error("unavailable", str(exc), 503)
    try:
        parsed = homomorphic.parse_request(body, len(form.weights))
    except homomorphic.HomomorphicRequestError as exc:
        return error("validation_failed", str(exc), 400)
    try:
        diagnosis_serving.charge_homomorphic(
            f"he:{request.user.pk}", parsed.patients, timezone.now(), user_pk=request.user.pk
        )
    except BudgetExceeded as exc:
        record(
            "prediction.refused",
            actor=request.user,
            outcome=Outcome.DENIED,
            client=ClientInfo.from_request(request),
            details={"model": "logistic", "client": "homomorphic", "reason": "budget"},
        )
        response = error("rate_limited", f"homomorphic scoring budget used ({exc.window})", 429)
        response["Retry-After"] = str(int(exc.retry_after.total_seconds()) + 1)
        return response
    reply = homomorphic.encode_reply(
        parsed.layout, parsed.patients, homomorphic.evaluate(parsed, form).serialize()
    )
    record(
        "prediction.homomorphic",
        actor=request.user,
        client=ClientInfo.from_request(request),
        details={"model": "logistic", "version": version, "patients": parsed.patients},
    )
    answer = HttpResponse(reply, content_type="application/octet-stream")
    answer["X-CareVault-Model-Version"] = str(version)
    answer["Cache-Control"] = "no-store"
    return answer


@csrf_exempt  # it does nothing, so a stray POST gets the JSON 404 rather than a CSRF page
def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Unknown API paths answer in JSON too."""
    return error("not_found", "no such API endpoint", 404)
