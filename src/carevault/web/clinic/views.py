"""Clinic pages: the doctor's patient list and patient record, the patient's own record,
appointments and access history.

Views are thin: a form parses the input, an access helper fetches-and-checks the object, one
action does the work (and writes the audit log). Each view turns its request into a
:class:`~carevault.web.clientinfo.ClientInfo` once and hands that to the actions. Every
decryption happens in an action or an audited read; nothing here logs PHI or puts it in an
exception.

Forms post with htmx when JavaScript runs (the response is the one section or row to swap, 400
with the inline errors when the input is refused) and as ordinary POST + redirect when it does
not (the full page, with the errors, when refused).
"""

from __future__ import annotations

from typing import Any, NoReturn
from urllib.parse import urlencode
from uuid import UUID

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from carevault.web.access import deny, role_required
from carevault.web.accounts.models import Role, User
from carevault.web.audit.models import AuditEntry
from carevault.web.clientinfo import ClientInfo
from carevault.web.errors import ActionError, NotAllowed
from carevault.web.vault.phi import PhiModel

from . import actions, record_parts
from .access import PatientAccess, access_route, patient_for_user
from .forms import (
    AppointmentForm,
    BreakGlassForm,
    DecisionForm,
    DiagnosisForm,
    NoteForm,
    PatientSearchForm,
    PrescriptionForm,
)
from .models import (
    Appointment,
    AppointmentStatus,
    BreakGlassGrant,
    CareRelationship,
    Patient,
)
from .paging import RECORD_PAGE_SIZE, BadCursor, Cursor, keyset
from .record_parts import Section

PAGE_SIZE = 20
HISTORY_PAGE_SIZE = 25

PhiValues = dict[str, str | None]


# -- helpers ---------------------------------------------------------------------------------------


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _acting_user(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):  # role_required let only signed-in users through
        raise Http404("not found")
    return user


def _refuse(request: HttpRequest, *, reason: str, target_type: str, target_id: Any) -> NoReturn:
    """404 and an audit entry (the object's existence is not confirmed)."""
    deny(request, reason=reason, target_type=target_type, target_id=target_id)
    raise Http404("not found")  # deny() has raised already; this line is for the type checker


def _action_failed(request: HttpRequest, form: forms.Form, exc: ActionError) -> int:
    """Show an action's refusal on the form; the status to answer with.

    NotAllowed is a 403 (audited), not a form error: the role may never do this."""
    if isinstance(exc, NotAllowed):
        deny(request, reason=exc.message, status=403)
    name = exc.field if exc.field in form.fields else None
    form.add_error(name, exc.message)
    if name is not None:
        widget = form.fields[name].widget
        if "is-invalid" not in widget.attrs.get("class", ""):
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()
    return 400


class _Listing:
    """Collects the columns a list page decrypts, so the page makes one audited read."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, Any], tuple[PhiModel, tuple[str, ...]]] = {}
        self._values: dict[tuple[str, Any], PhiValues] = {}

    def add(self, obj: PhiModel, *columns: str) -> None:
        self._rows.setdefault((obj._meta.label_lower, obj.pk), (obj, columns))

    def read(self, user: User, client: ClientInfo, purpose: str) -> None:
        rows = list(self._rows.values())
        values = actions.read_listing(user, rows, purpose=purpose, client=client)
        self._values = dict(zip(self._rows, values, strict=True))

    def __getitem__(self, obj: PhiModel) -> PhiValues:
        return self._values[(obj._meta.label_lower, obj.pk)]


# -- doctor: home ----------------------------------------------------------------------------------


@role_required(Role.DOCTOR)
@require_http_methods(["GET", "POST"])
def doctor_home(request: HttpRequest) -> HttpResponse:
    """Patients, MRN search, pending requests, upcoming appointments.

    The search posts (rather than GET ?mrn=...) so an MRN never lands in a URL, and with it in
    access logs and browser history."""
    doctor = _acting_user(request)
    client = ClientInfo.from_request(request)
    now = timezone.now()
    relations = (
        CareRelationship.objects.filter(doctor=doctor)
        .select_related("patient")
        .order_by("created_at", "pk")
    )
    page = Paginator(relations, PAGE_SIZE).get_page(request.GET.get("page"))
    pending = list(
        Appointment.objects.filter(doctor=doctor, status=AppointmentStatus.REQUESTED)
        .select_related("patient")
        .order_by("starts_at")
    )
    upcoming = list(
        Appointment.objects.filter(
            doctor=doctor, status=AppointmentStatus.CONFIRMED, starts_at__gte=now
        )
        .select_related("patient")
        .order_by("starts_at")[:50]
    )
    grants = list(
        BreakGlassGrant.objects.filter(doctor=doctor, revoked=False, expires_at__gt=now)
        .select_related("patient")
        .order_by("expires_at")
    )

    search_form = PatientSearchForm(request.POST if request.method == "POST" else None)
    matches: list[tuple[Patient, bool, BreakGlassForm | None]] = []
    searched = False
    status = 200
    if search_form.is_bound:
        if search_form.is_valid():
            searched = True
            found = actions.search_patients(
                doctor, search_form.cleaned_data["query"], client=client
            )
            for i, patient in enumerate(found):
                mine = access_route(doctor, patient) != ""
                # Not theirs: no data, only the way in that is logged as an alert.
                form = None if mine else BreakGlassForm(auto_id=f"breakglass{i}_%s")
                matches.append((patient, mine, form))
        else:
            status = 400

    listing = _Listing()
    for relation in page:
        listing.add(relation.patient, "name", "mrn")
    for grant in grants:
        listing.add(grant.patient, "name", "mrn")
    for patient, mine, _ in matches:
        if mine:
            listing.add(patient, "name", "mrn")
    for appointment in pending + upcoming:
        listing.add(appointment, "reason")
        listing.add(appointment.patient, "name", "mrn")
    listing.read(doctor, client, "doctor home")

    context = {
        "page": page,
        "patients": [(r.patient, listing[r.patient]) for r in page],
        "grants": [(g, listing[g.patient]) for g in grants],
        "search_form": search_form,
        "searched": searched,
        "matches": [(p, listing[p] if mine else None, form) for p, mine, form in matches],
        "pending": [(a, listing[a.patient], listing[a]) for a in pending],
        "upcoming": [(a, listing[a.patient], listing[a]) for a in upcoming],
    }
    return render(request, "clinic/doctor_home.html", context, status=status)


@role_required(Role.DOCTOR)
@require_POST
def decide_appointment(request: HttpRequest, appointment_id: UUID) -> HttpResponse:
    doctor = _acting_user(request)
    appointment = Appointment.objects.filter(pk=appointment_id, doctor=doctor).first()
    if appointment is None:
        _refuse(
            request,
            reason="appointment is not with this doctor",
            target_type="clinic.appointment",
            target_id=appointment_id,
        )
    form = DecisionForm(request.POST)
    error = ""
    status = 200
    if form.is_valid():
        confirm = form.cleaned_data["decision"] == "confirm"
        try:
            actions.do_decide_appointment(
                doctor, appointment, confirm=confirm, client=ClientInfo.from_request(request)
            )
        except ActionError as exc:
            status = _action_failed(request, form, exc)
            error = exc.message
    else:
        status, error = 400, "Choose Confirm or Decline."
    if _is_htmx(request):
        appointment.refresh_from_db(fields=["status"])
        return render(
            request,
            "clinic/partials/decided_row.html",
            {"appointment": appointment, "error": error},
            status=status,
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"Appointment {appointment.get_status_display().lower()}.")
    return redirect("clinic:doctor_home")


# -- doctor: a patient's record --------------------------------------------------------------------


def _detail_context(doctor: User, access: PatientAccess, client: ClientInfo) -> dict[str, Any]:
    patient: Patient = access.patient
    record = actions.read_patient_record(
        doctor,
        patient,
        via=access.via,
        client=client,
        extra_sections=record_parts.audit_sections(),
    )
    grant = None
    if access.via == "break-glass":
        grant = (
            BreakGlassGrant.objects.filter(
                doctor=doctor, patient=patient, revoked=False, expires_at__gt=timezone.now()
            )
            .order_by("-expires_at")
            .first()
        )
    parts = record_parts.read_all(patient)
    return {
        "patient": patient,
        "record": record,
        **parts,
        "more": _more_urls("doctor", patient, record, parts),
        "via": access.via,
        "grant": grant,
        "diagnosis_form": DiagnosisForm(),
        "note_form": NoteForm(),
        "prescription_form": PrescriptionForm(),
        **{p.section.form_key: p.section.form_class() for p in record_parts.parts() if p.section},
    }


@role_required(Role.DOCTOR)
@require_safe
def patient_detail(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    doctor = _acting_user(request)
    access = patient_for_user(request, patient_id, purpose="patient record")
    context = _detail_context(doctor, access, ClientInfo.from_request(request))
    return render(request, "clinic/patient_detail.html", context)


SECTIONS = {
    "diagnoses": Section(
        "diagnoses",
        DiagnosisForm,
        "diagnosis_form",
        lambda u, p, d, c: actions.do_add_diagnosis(u, p, client=c, **d),
    ),
    "notes": Section(
        "notes", NoteForm, "note_form", lambda u, p, d, c: actions.do_add_note(u, p, client=c, **d)
    ),
    "prescriptions": Section(
        "prescriptions",
        PrescriptionForm,
        "prescription_form",
        lambda u, p, d, c: actions.do_prescribe(u, p, client=c, **d),
    ),
}


def _section(name: str) -> Section:
    """A writable section of the record page: the clinic's own, or one an app registered."""
    registered = {p.section.name: p.section for p in record_parts.parts() if p.section}
    section = SECTIONS.get(name) or registered.get(name)
    if section is None:
        raise Http404("not found")
    return section


def _write_section(request: HttpRequest, patient_id: UUID, section: Section) -> HttpResponse:
    doctor = _acting_user(request)
    client = ClientInfo.from_request(request)
    access = patient_for_user(request, patient_id, purpose=f"add to {section.name}")
    form = section.form_class(request.POST)
    status = 200
    if form.is_valid():
        try:
            section.write(doctor, access.patient, form.cleaned_data, client)
        except ActionError as exc:
            status = _action_failed(request, form, exc)
        else:
            if not _is_htmx(request):
                url = reverse("clinic:patient_detail", args=[access.patient.pk])
                return redirect(f"{url}#section-{section.name}")
            form = section.form_class()  # a fresh form under the updated list
    else:
        status = 400
    context = _detail_context(doctor, access, client)
    context[section.form_key] = form
    template = section.template if _is_htmx(request) else "clinic/patient_detail.html"
    return render(request, template, context, status=status)


@role_required(Role.DOCTOR)
@require_POST
def add_diagnosis(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    return _write_section(request, patient_id, SECTIONS["diagnoses"])


@role_required(Role.DOCTOR)
@require_POST
def add_note(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    return _write_section(request, patient_id, SECTIONS["notes"])


@role_required(Role.DOCTOR)
@require_POST
def prescribe(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    return _write_section(request, patient_id, SECTIONS["prescriptions"])


@role_required(Role.DOCTOR)
@require_POST
def request_lab_test(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    return _write_section(request, patient_id, _section("labs"))


@role_required(Role.DOCTOR)
@require_POST
def break_glass(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    """Emergency access to a patient who is not the doctor's. The doctor reaches this from an
    exact MRN match; the grant is time-limited and audited with outcome ALERT."""
    doctor = _acting_user(request)
    patient = Patient.objects.filter(pk=patient_id).first()
    if patient is None:
        _refuse(
            request,
            reason="break-glass for an unknown patient",
            target_type="clinic.patient",
            target_id=patient_id,
        )
    form = BreakGlassForm(request.POST)
    if form.is_valid():
        try:
            actions.do_break_glass(
                doctor,
                patient,
                reason=form.cleaned_data["reason"],
                client=ClientInfo.from_request(request),
            )
        except ActionError as exc:
            _action_failed(request, form, exc)
        else:
            return redirect("clinic:patient_detail", patient_id=patient.pk)
    return render(
        request, "clinic/break_glass.html", {"form": form, "patient_id": patient.pk}, status=400
    )


# -- record sections, a slice at a time ("show more") ---------------------------------------------

SECTION_TITLES = {
    "diagnoses": "Diagnoses",
    "notes": "Clinical notes",
    "prescriptions": "Prescriptions",
    "appointments": "Appointments",
}
# The rows of a slice, by who is looking: the patient's appointments carry a Cancel button.
ROWS_TEMPLATES = {
    "diagnoses": "clinic/partials/diagnosis_rows.html",
    "notes": "clinic/partials/note_rows.html",
    "prescriptions": "clinic/partials/prescription_rows.html",
    "appointments": "clinic/partials/appointment_rows.html",
    "labs": "clinic/partials/lab_rows.html",
}
PATIENT_ROWS_TEMPLATES = {
    "appointments": "clinic/partials/patient_appointment_rows.html",
}
# Rows of these sections are table rows (the "show more" control is a row too).
TABLE_SECTIONS = {"prescriptions": 6, "appointments": 4, "labs": 5}


def _more_url(viewer: str, patient: Patient, section: str, cursor: Cursor | None) -> str:
    """The URL of the slice after ``cursor`` ("" when there is none)."""
    if cursor is None:
        return ""
    if viewer == "patient":
        url = reverse("clinic:own_section", args=[section])
    else:
        url = reverse("clinic:record_section", args=[patient.pk, section])
    return f"{url}?{urlencode({'before': str(cursor)})}"


def _more_urls(
    viewer: str, patient: Patient, record: actions.PatientRecord, parts: dict[str, Any]
) -> dict[str, str]:
    urls = {name: _more_url(viewer, patient, name, c) for name, c in record.more.items()}
    urls.update({name: _more_url(viewer, patient, name, s.next) for name, s in parts.items()})
    return urls


def _section_reader(name: str) -> tuple[actions.SectionReader, tuple[str, ...], str]:
    """A section's reader, what its audit entry names and its title; 404 for no such section."""
    if name in actions.SECTION_READERS:
        return actions.SECTION_READERS[name], (name,), SECTION_TITLES[name]
    part = record_parts.part(name)
    if part is None or name not in ROWS_TEMPLATES:  # (a part with no rows to show on its own)
        raise Http404("not found")
    return part.read, part.audit_sections, part.title or name.capitalize()


def _section_slice(
    request: HttpRequest, access: PatientAccess, name: str, viewer: str
) -> HttpResponse:
    """One slice of a section: the rows (and the next "show more") for htmx to put in place of
    the control that asked, or, opened directly, a page of its own that works without
    JavaScript (its "show more" is a plain link to the next slice)."""
    read, audited, title = _section_reader(name)
    user = _acting_user(request)
    htmx = _is_htmx(request)
    rows_template = (PATIENT_ROWS_TEMPLATES if viewer == "patient" else {}).get(
        name, ROWS_TEMPLATES.get(name, "")
    )
    context: dict[str, Any] = {
        "patient": access.patient,
        "via": access.via,
        "viewer": viewer,
        "section": name,
        "title": title,
        "rows_template": rows_template,
        # The patient's appointments have a column more (Cancel).
        "columns": TABLE_SECTIONS.get(name, 0) + (viewer == "patient" and name == "appointments"),
        "show_lab_details": viewer == "doctor",
        "now": timezone.now(),
    }
    try:
        before = Cursor.parse(request.GET.get("before"))
    except BadCursor as exc:
        context["error"] = exc.message
        template = "clinic/partials/section_error.html" if htmx else "clinic/record_section.html"
        response = render(request, template, context, status=400)
    else:
        part = actions.read_record_section(
            user,
            access.patient,
            read,
            via=access.via,
            sections=audited,
            before=before,
            client=ClientInfo.from_request(request),
        )
        context.update(
            rows=part.rows,
            more_url=_more_url(viewer, access.patient, name, part.next),
            first=before is None,
        )
        template = rows_template if htmx else "clinic/record_section.html"
        response = render(request, template, context)
    # The same URL answers a fragment or a page: caches must keep them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


@role_required(Role.DOCTOR)
@require_safe
def record_section(request: HttpRequest, patient_id: UUID, section: str) -> HttpResponse:
    """A slice of one section of a patient's record, for the doctor: the same access rules
    (care team or a live break-glass grant), refusals and audit as the record page."""
    _section_reader(section)  # an unknown section is a 404 before anything is read
    access = patient_for_user(request, patient_id, purpose=f"patient record: {section}")
    return _section_slice(request, access, section, "doctor")


# -- patient ---------------------------------------------------------------------------------------


def _own_access(request: HttpRequest) -> PatientAccess:
    patient = Patient.objects.filter(user=_acting_user(request)).first()
    if patient is None:
        _refuse(request, reason="no patient record for this user", target_type="", target_id="")
    return patient_for_user(request, patient.pk, purpose="own record")


def _own_appointments(client: ClientInfo, user: User, patient: Patient) -> tuple[list[Any], str]:
    """The first slice of the patient's appointments (as on their record page) and the URL of
    the next one ("" when there is none)."""
    appointments, more = keyset(
        patient.appointments.select_related("doctor"),
        None,
        order="starts_at",
        limit=RECORD_PAGE_SIZE,
    )
    listing = _Listing()
    for appointment in appointments:
        listing.add(appointment, "reason")
    listing.read(user, client, "own appointments")
    return [(a, listing[a]) for a in appointments], _more_url(
        "patient", patient, "appointments", more
    )


def _render_patient_home(
    request: HttpRequest,
    client: ClientInfo,
    form: AppointmentForm | None = None,
    status: int = 200,
) -> HttpResponse:
    user = _acting_user(request)
    access = _own_access(request)
    # Notes included: patients have a right of access to their record, clinicians' notes
    # too (HIPAA right of access; the Cures Act's "open notes"). The main exception,
    # psychotherapy notes kept apart from the record, has no class here; if one is added,
    # it is to be filtered here, not by hiding every note.
    record = actions.read_patient_record(
        user,
        access.patient,
        via=access.via,
        client=client,
        extra_sections=record_parts.audit_sections(),
    )
    parts = record_parts.read_all(access.patient)
    context = {
        "patient": access.patient,
        "record": record,
        **parts,
        "more": _more_urls("patient", access.patient, record, parts),
        "appointments": record.appointments,
        "appointment_form": form or AppointmentForm(),
        "now": timezone.now(),
    }
    return render(request, "clinic/patient_home.html", context, status=status)


@role_required(Role.PATIENT)
@require_safe
def patient_home(request: HttpRequest) -> HttpResponse:
    return _render_patient_home(request, ClientInfo.from_request(request))


@role_required(Role.PATIENT)
@require_safe
def own_section(request: HttpRequest, section: str) -> HttpResponse:
    """A slice of one section of the patient's own record."""
    _section_reader(section)
    return _section_slice(request, _own_access(request), section, "patient")


@role_required(Role.PATIENT)
@require_POST
def book_appointment(request: HttpRequest) -> HttpResponse:
    user = _acting_user(request)
    client = ClientInfo.from_request(request)
    access = _own_access(request)
    form = AppointmentForm(request.POST)
    status = 200
    if form.is_valid():
        try:
            actions.do_request_appointment(user, client=client, **form.cleaned_data)
        except ActionError as exc:
            status = _action_failed(request, form, exc)
        else:
            if not _is_htmx(request):
                messages.success(request, "Appointment requested; the doctor will confirm it.")
                return redirect(f"{reverse('clinic:patient_home')}#section-appointments")
            form = AppointmentForm()
    else:
        status = 400
    if not _is_htmx(request):
        return _render_patient_home(request, client, form, status)
    appointments, more_url = _own_appointments(client, user, access.patient)
    context = {
        "appointments": appointments,
        "more": {"appointments": more_url},
        "appointment_form": form,
        "now": timezone.now(),
        "booked": status == 200,
    }
    return render(request, "clinic/partials/patient_appointments.html", context, status=status)


@role_required(Role.PATIENT)
@require_POST
def cancel_appointment(request: HttpRequest, appointment_id: UUID) -> HttpResponse:
    user = _acting_user(request)
    appointment = (
        Appointment.objects.filter(pk=appointment_id, patient__user=user)
        .select_related("doctor", "patient")
        .first()
    )
    if appointment is None:
        _refuse(
            request,
            reason="appointment is not this patient's",
            target_type="clinic.appointment",
            target_id=appointment_id,
        )
    client = ClientInfo.from_request(request)
    error = ""
    status = 200
    try:
        actions.do_cancel_appointment(user, appointment, client=client)
    except NotAllowed as exc:
        deny(request, reason=exc.message, status=403)
    except ActionError as exc:
        status, error = 400, exc.message
    if not _is_htmx(request):
        if error:
            messages.error(request, error)
        else:
            messages.success(request, "Appointment cancelled.")
        return redirect(f"{reverse('clinic:patient_home')}#section-appointments")
    listing = _Listing()
    listing.add(appointment, "reason")
    listing.read(user, client, "own appointment")
    context = {
        "appointment": appointment,
        "values": listing[appointment],
        "now": timezone.now(),
        "error": error,
    }
    return render(request, "clinic/partials/patient_appointment_row.html", context, status=status)


ACTION_LABELS = {
    "phi.read": "Opened your record",
    "phi.list": "Saw your name or appointments in a list",
    "patient.search": "Looked you up by MRN",
    "patient.create": "Created your record",
    "care.assign": "Added a doctor to your care team",
    "diagnosis.create": "Added a diagnosis",
    "note.create": "Added a clinical note",
    "prescription.create": "Wrote a prescription",
    "appointment.request": "Requested an appointment",
    "appointment.cancel": "Cancelled an appointment",
    "appointment.confirm": "Confirmed an appointment",
    "appointment.decline": "Declined an appointment",
    "breakglass.open": "Opened emergency (break-glass) access",
    "breakglass.revoke": "Revoked emergency access",
    "lab.request": "Requested a lab test",
    "lab.result": "Recorded a lab result",
    "access.denied": "Was refused access",
    # The security layer (issue 5): damage found in the stored record, and the key rotation
    # that answered it.
    "phi.decryption_failed": "Found part of your stored record altered (integrity check failed)",
    "phi.signature_failed": "Found a signed entry of your record altered (signature check failed)",
    "security.response": "Security response: your record's encryption key was rotated",
}


@role_required(Role.PATIENT)
@require_safe
def patient_history(request: HttpRequest) -> HttpResponse:
    """Who accessed my record: every audit entry about this patient, newest first."""
    access = _own_access(request)
    entries = AuditEntry.objects.filter(patient_id=str(access.patient.pk)).order_by("-seq")
    # The patient's own visits are noise in "who accessed my record"; one click shows them.
    include_mine = request.GET.get("mine") == "1"
    if not include_mine:
        entries = entries.exclude(actor_id=request.user.pk)
    page = Paginator(entries, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    roles = dict(Role.choices)
    rows = [
        {
            "entry": e,
            "role": roles.get(e.role, e.role or "system"),
            "what": ACTION_LABELS.get(e.action, e.action),
            "via": e.details.get("via", "") if isinstance(e.details, dict) else "",
        }
        for e in page
    ]
    return render(
        request,
        "clinic/patient_history.html",
        {"page": page, "rows": rows, "include_mine": include_mine},
    )
