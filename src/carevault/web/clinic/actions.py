"""Every write (and every PHI read) of the clinic domain. Each ``do_*`` is atomic, takes the
acting user and a :class:`~carevault.web.clientinfo.ClientInfo` (never a request), and writes the
audit log in the same transaction. The views build the ClientInfo once per request; the command
line, the demo seed and the benchmarks leave it at :data:`~carevault.web.clientinfo.NO_CLIENT`."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from carevault.crypto import DecryptionError, InvalidSignatureError, Signature
from carevault.web.accounts.models import Role, User
from carevault.web.accounts.passwords import set_validated_password
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import NO_CLIENT, ClientInfo
from carevault.web.errors import Conflict, NotAllowed, ValidationFailed
from carevault.web.vault import service
from carevault.web.vault.context import WriteContext, write_context
from carevault.web.vault.phi import PhiModel

from .models import (
    Appointment,
    AppointmentStatus,
    BreakGlassGrant,
    CareRelationship,
    ClinicalNote,
    DataClass,
    Diagnosis,
    Patient,
    Prescription,
)
from .paging import RECORD_PAGE_SIZE, Cursor, Slice, keyset

MAX_TEXT = 4000


def _text(value: Any, field_name: str, *, required: bool = True, limit: int = MAX_TEXT) -> str:
    text = str(value or "").strip()
    if required and not text:
        raise ValidationFailed(f"{field_name.replace('_', ' ')} is required", field=field_name)
    if len(text) > limit:
        raise ValidationFailed(
            f"{field_name.replace('_', ' ')} is longer than {limit} characters", field=field_name
        )
    return text


def _count(patient: Patient, n: int) -> None:
    service.count_encryptions(patient.pk, n)


def store_sealed(
    row: PhiModel,
    patient: Patient,
    *,
    action: str,
    acting_user: User,
    client: ClientInfo,
    **values: str,
) -> None:
    """Seal the PHI values into a new row, save it, count the encryptions, audit the write."""
    n = row.seal(write_context(acting_user, client), **values)
    row.save()
    service.count_encryptions(patient.pk, n)
    record(action, actor=acting_user, target=row, patient_id=patient.pk, client=client)


# -- patients -------------------------------------------------------------------------------------


def new_mrn() -> str:
    return f"MRN-{secrets.randbelow(10**8):08d}"


@transaction.atomic
def do_create_patient(
    acting_user: User | None,
    *,
    name: str,
    birth_date: dt.date,
    email: str = "",
    phone: str = "",
    address: str = "",
    user: User | None = None,
    mrn: str | None = None,
    client: ClientInfo = NO_CLIENT,
) -> Patient:
    return _create_patient(
        acting_user,
        write_context(acting_user, client),
        name=name,
        birth_date=birth_date,
        email=email,
        phone=phone,
        address=address,
        user=user,
        mrn=mrn,
        client=client,
    )


def _create_patient(
    acting_user: User | None,
    ctx: WriteContext,
    *,
    name: str,
    birth_date: dt.date,
    email: str,
    phone: str,
    address: str,
    user: User | None,
    mrn: str | None,
    client: ClientInfo,
) -> Patient:
    name = _text(name, "name", limit=200)
    if not isinstance(birth_date, dt.date) or birth_date > timezone.localdate():
        raise ValidationFailed("date of birth must be a past date", field="birth_date")
    email = _text(email, "email", required=False, limit=254).lower()
    mrn = mrn or new_mrn()
    patient = Patient(user=user)
    service.create_patient_keyring(patient.pk)
    n = patient.seal(
        ctx,
        name=name,
        birth_date=birth_date.isoformat(),
        mrn=mrn,
        email=email,
        phone=_text(phone, "phone", required=False, limit=40),
        address=_text(address, "address", required=False, limit=400),
    )
    patient.mrn_index = service.blind_index("patient.mrn", mrn)
    patient.email_index = service.blind_index("patient.email", email) if email else ""
    patient.save()
    _count(patient, n)
    record(
        "patient.create", actor=acting_user, target=patient, patient_id=patient.pk, client=client
    )
    return patient


@transaction.atomic
def do_register_patient(
    *,
    username: str,
    password: str,
    name: str,
    birth_date: dt.date,
    email: str = "",
    phone: str = "",
    client: ClientInfo = NO_CLIENT,
) -> User:
    """Self-registration: always and only the patient role."""
    username = _text(username, "username", limit=150)
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationFailed("that username is taken", field="username")
    user = User(username=username, role=Role.PATIENT)
    set_validated_password(user, password)
    user.save()
    # Nobody is signed in while registering: the record is written as the system, as any
    # write outside a signed-in session is (not as the patient the form is creating).
    _create_patient(
        user,
        write_context(None, client),
        name=name,
        birth_date=birth_date,
        email=email,
        phone=phone,
        address="",
        user=user,
        mrn=None,
        client=client,
    )
    record("account.register", actor=user, target=user, client=client)
    return user


def find_patients_by_mrn(acting_user: User, mrn: str) -> list[Patient]:
    """Exact match through the blind index, then confirmed by decryption (the index is lossy)."""
    candidates = Patient.objects.filter(mrn_index=service.blind_index("patient.mrn", mrn.strip()))
    return [p for p in candidates if p.unseal_or_none("mrn") == mrn.strip()]


def find_patients_by_email(acting_user: User, email: str) -> list[Patient]:
    """Exact (case-insensitive) e-mail match through its blind index, confirmed by decryption."""
    wanted = email.strip().lower()
    candidates = Patient.objects.filter(email_index=service.blind_index("patient.email", wanted))
    return [p for p in candidates if p.unseal_or_none("email") == wanted]


def find_patients(acting_user: User, query: str) -> list[Patient]:
    """An exact MRN or e-mail address: the only searches blind indexes allow."""
    if "@" in query:
        return find_patients_by_email(acting_user, query)
    return find_patients_by_mrn(acting_user, query)


def search_patients(
    acting_user: User, query: str, *, client: ClientInfo = NO_CLIENT
) -> list[Patient]:
    """:func:`find_patients`, audited: looking a patient up is part of the access trail
    (it usually comes before a break-glass), so each match lands in that patient's history.
    The query itself is PHI and is not logged."""
    matches = find_patients(acting_user, query)
    with transaction.atomic():
        if not matches:
            record("patient.search", actor=acting_user, client=client, details={"matches": 0})
        for patient in matches:
            record(
                "patient.search",
                actor=acting_user,
                target=patient,
                patient_id=patient.pk,
                client=client,
                details={"matches": len(matches)},
            )
    return matches


@transaction.atomic
def do_assign_doctor(
    acting_user: User, doctor: User, patient: Patient, *, client: ClientInfo = NO_CLIENT
) -> CareRelationship:
    if doctor.role != Role.DOCTOR:
        raise ValidationFailed("only doctors join a care team", field="doctor")
    relation, created = CareRelationship.objects.get_or_create(doctor=doctor, patient=patient)
    if created:
        record(
            "care.assign",
            actor=acting_user,
            target=relation,
            patient_id=patient.pk,
            client=client,
            details={"doctor": doctor.username},
        )
    return relation


# -- clinical writes ------------------------------------------------------------------------------


@transaction.atomic
def do_add_diagnosis(
    acting_user: User,
    patient: Patient,
    *,
    code: str,
    description: str,
    data_class: str = DataClass.ORDINARY,
    client: ClientInfo = NO_CLIENT,
) -> Diagnosis:
    if data_class not in DataClass.values:
        raise ValidationFailed("unknown data class", field="data_class")
    diagnosis = Diagnosis(patient=patient, doctor=acting_user, data_class=data_class)
    store_sealed(
        diagnosis,
        patient,
        action="diagnosis.create",
        acting_user=acting_user,
        client=client,
        code=_text(code, "code", limit=32),
        description=_text(description, "description"),
    )
    return diagnosis


@transaction.atomic
def do_add_note(
    acting_user: User, patient: Patient, *, body: str, client: ClientInfo = NO_CLIENT
) -> ClinicalNote:
    note = ClinicalNote(patient=patient, author=acting_user)
    store_sealed(
        note,
        patient,
        action="note.create",
        acting_user=acting_user,
        client=client,
        body=_text(body, "body", limit=20000),
    )
    return note


def prescription_record(p: Prescription, values: dict[str, str]) -> dict[str, Any]:
    """What a prescription signature covers: every field a pharmacist would act on."""
    return {
        "id": str(p.pk),
        "patient": str(p.patient_id),
        "doctor": p.doctor.username,
        "drug": values["drug"],
        "dose": values["dose"],
        "instructions": values["instructions"],
        "created_at": p.created_at.isoformat(),
    }


@transaction.atomic
def do_prescribe(
    acting_user: User,
    patient: Patient,
    *,
    drug: str,
    dose: str,
    instructions: str,
    client: ClientInfo = NO_CLIENT,
) -> Prescription:
    values = {
        "drug": _text(drug, "drug", limit=200),
        "dose": _text(dose, "dose", limit=200),
        "instructions": _text(instructions, "instructions", limit=2000),
    }
    key_record, key = service.signing_key_for(acting_user)
    p = Prescription(
        patient=patient,
        doctor=acting_user,
        signing_key=key_record,
        created_at=timezone.now().replace(microsecond=0),
    )
    p.signature = key.sign(prescription_record(p, values), purpose="prescription").to_text()
    n = p.seal(write_context(acting_user, client), **values)
    p.save()
    _count(patient, n)
    record(
        "prescription.create",
        actor=acting_user,
        target=p,
        patient_id=patient.pk,
        client=client,
        details={"key_id": key_record.key_id},
    )
    return p


class SignatureStatus:
    VALID = "valid"
    TAMPERED = "tampered"


def verify_signed(
    values: dict[str, str | None],
    build: Any,
    signature_text: str,
    key_record: Any,
    signer: User,
    purpose: str,
) -> str:
    """'valid' only if every field decrypts, the key is the signer's and the signature holds."""
    if any(v is None for v in values.values()) or key_record.user_id != signer.pk:
        return SignatureStatus.TAMPERED
    try:
        service.verify_key(key_record).verify(
            build(values), Signature.from_text(signature_text), purpose=purpose
        )
    except (InvalidSignatureError, DecryptionError):
        return SignatureStatus.TAMPERED
    return SignatureStatus.VALID


def prescription_status(p: Prescription, values: dict[str, str | None]) -> str:
    status = verify_signed(
        values,
        lambda v: prescription_record(p, v),
        p.signature,
        p.signing_key,
        p.doctor,
        "prescription",
    )
    if status == SignatureStatus.TAMPERED and None not in values.values():
        # Fields that do not decrypt were reported already (PhiModel.unseal_or_none).
        p.report_signature_failure()
    return status


# -- appointments ---------------------------------------------------------------------------------


@transaction.atomic
def do_request_appointment(
    acting_user: User,
    *,
    doctor: User,
    starts_at: dt.datetime,
    reason: str,
    client: ClientInfo = NO_CLIENT,
) -> Appointment:
    patient = Patient.objects.filter(user=acting_user).first()
    if patient is None:
        raise NotAllowed("only patients book appointments")
    if doctor.role != Role.DOCTOR or not doctor.is_active:
        raise ValidationFailed("choose a doctor", field="doctor")
    if starts_at <= timezone.now():
        raise ValidationFailed("the appointment must be in the future", field="starts_at")
    if Appointment.objects.filter(
        doctor=doctor,
        starts_at=starts_at,
        status__in=[AppointmentStatus.REQUESTED, AppointmentStatus.CONFIRMED],
    ).exists():
        raise Conflict("that time is already taken; choose another", field="starts_at")
    appointment = Appointment(patient=patient, doctor=doctor, starts_at=starts_at)
    store_sealed(
        appointment,
        patient,
        action="appointment.request",
        acting_user=acting_user,
        client=client,
        reason=_text(reason, "reason", limit=500),
    )
    return appointment


@transaction.atomic
def do_cancel_appointment(
    acting_user: User, appointment: Appointment, *, client: ClientInfo = NO_CLIENT
) -> Appointment:
    if appointment.patient.user_id != acting_user.pk:
        raise NotAllowed("you can cancel only your own appointments")
    if appointment.status in (AppointmentStatus.CANCELLED, AppointmentStatus.DECLINED):
        raise Conflict("this appointment is no longer active")
    appointment.status = AppointmentStatus.CANCELLED
    appointment.save(update_fields=["status"])
    record(
        "appointment.cancel",
        actor=acting_user,
        target=appointment,
        patient_id=appointment.patient_id,
        client=client,
    )
    return appointment


@transaction.atomic
def do_decide_appointment(
    acting_user: User,
    appointment: Appointment,
    *,
    confirm: bool,
    client: ClientInfo = NO_CLIENT,
) -> Appointment:
    if appointment.doctor_id != acting_user.pk:
        raise NotAllowed("this appointment is with another doctor")
    if appointment.status != AppointmentStatus.REQUESTED:
        raise Conflict("this appointment has already been decided")
    appointment.status = AppointmentStatus.CONFIRMED if confirm else AppointmentStatus.DECLINED
    appointment.save(update_fields=["status"])
    if confirm:
        # Confirming an appointment makes the doctor part of the patient's care team.
        do_assign_doctor(acting_user, acting_user, appointment.patient, client=client)
    record(
        "appointment.confirm" if confirm else "appointment.decline",
        actor=acting_user,
        target=appointment,
        patient_id=appointment.patient_id,
        client=client,
    )
    return appointment


# -- break-the-glass ------------------------------------------------------------------------------


@transaction.atomic
def do_break_glass(
    acting_user: User, patient: Patient, *, reason: str, client: ClientInfo = NO_CLIENT
) -> BreakGlassGrant:
    if acting_user.role != Role.DOCTOR:
        raise NotAllowed("only doctors may use emergency access")
    reason = _text(reason, "reason", limit=1000)
    if len(reason) < 15:
        raise ValidationFailed(
            "give the clinical reason in a sentence (15 characters or more)", field="reason"
        )
    grant = BreakGlassGrant(
        doctor=acting_user,
        patient=patient,
        expires_at=timezone.now() + dt.timedelta(minutes=settings.BREAK_GLASS_MINUTES),
    )
    n = grant.seal(write_context(acting_user, client), reason=reason)
    grant.save()
    _count(patient, n)
    record(
        "breakglass.open",
        actor=acting_user,
        outcome=Outcome.ALERT,
        target=grant,
        patient_id=patient.pk,
        client=client,
        details={"expires_at": grant.expires_at.isoformat()},
    )
    return grant


@transaction.atomic
def do_revoke_break_glass(
    acting_user: User, grant: BreakGlassGrant, *, client: ClientInfo = NO_CLIENT
) -> BreakGlassGrant:
    if acting_user.role != Role.ADMIN:
        raise NotAllowed("only security officers revoke emergency access")
    grant.revoked = True
    grant.save(update_fields=["revoked"])
    record(
        "breakglass.revoke",
        actor=acting_user,
        target=grant,
        patient_id=grant.patient_id,
        client=client,
    )
    return grant


# -- audited reads ---------------------------------------------------------------------------


PhiValues = dict[str, str | None]

# The record's own sections, read a keyset slice at a time (see paging.py). Appointments are
# ordered by when they are, the rest by when they were written.
CLINIC_SECTIONS = ("diagnoses", "notes", "prescriptions", "appointments")


def read_diagnoses(
    patient: Patient, before: Cursor | None, limit: int = RECORD_PAGE_SIZE
) -> Slice[tuple[Diagnosis, PhiValues]]:
    rows, more = keyset(patient.diagnoses.select_related("doctor"), before, limit=limit)
    return Slice([(d, d.unseal_all()) for d in rows], more)


def read_notes(
    patient: Patient, before: Cursor | None, limit: int = RECORD_PAGE_SIZE
) -> Slice[tuple[ClinicalNote, PhiValues]]:
    rows, more = keyset(patient.notes.select_related("author"), before, limit=limit)
    return Slice([(n, n.unseal_all()) for n in rows], more)


def read_prescriptions(
    patient: Patient, before: Cursor | None, limit: int = RECORD_PAGE_SIZE
) -> Slice[tuple[Prescription, PhiValues, str]]:
    rows, more = keyset(
        patient.prescriptions.select_related("doctor", "signing_key"), before, limit=limit
    )
    out = []
    for p in rows:  # only the shown prescriptions are decrypted and their signatures checked
        values = p.unseal_all()
        out.append((p, values, prescription_status(p, values)))
    return Slice(out, more)


def read_appointments(
    patient: Patient, before: Cursor | None, limit: int = RECORD_PAGE_SIZE
) -> Slice[tuple[Appointment, PhiValues]]:
    rows, more = keyset(
        patient.appointments.select_related("doctor"), before, order="starts_at", limit=limit
    )
    return Slice([(a, a.unseal_all()) for a in rows], more)


SectionReader = Callable[[Patient, Cursor | None, int], Slice[Any]]

SECTION_READERS: dict[str, SectionReader] = {
    "diagnoses": read_diagnoses,
    "notes": read_notes,
    "prescriptions": read_prescriptions,
    "appointments": read_appointments,
}


@dataclass
class PatientRecord:
    """The first slice of each section (newest first) and where each continues (``more``:
    the cursor of the next slice by section, None when the slice reached the oldest row)."""

    patient: Patient
    demographics: PhiValues
    diagnoses: list[tuple[Diagnosis, PhiValues]] = field(default_factory=list)
    notes: list[tuple[ClinicalNote, PhiValues]] = field(default_factory=list)
    prescriptions: list[tuple[Prescription, PhiValues, str]] = field(default_factory=list)
    appointments: list[tuple[Appointment, PhiValues]] = field(default_factory=list)
    more: dict[str, Cursor | None] = field(default_factory=dict)


def _phi_read(
    acting_user: User,
    patient: Patient,
    *,
    via: str,
    client: ClientInfo,
    sections: Sequence[str],
    before: Cursor | None = None,
) -> None:
    details: dict[str, Any] = {"via": via, "sections": list(sections)}
    if before is not None:
        details["before"] = str(before)  # a time and a row id: no PHI
    record(
        "phi.read",
        actor=acting_user,
        outcome=Outcome.ALERT if via == "break-glass" else Outcome.OK,
        target=patient,
        patient_id=patient.pk,
        client=client,
        details=details,
    )


def read_patient_record(
    acting_user: User,
    patient: Patient,
    *,
    via: str,
    client: ClientInfo = NO_CLIENT,
    include_notes: bool = True,
    extra_sections: Sequence[str] = (),
    limit: int = RECORD_PAGE_SIZE,
) -> PatientRecord:
    """Decrypt the first slice of every section of a patient's record for display (at most
    ``limit`` rows each, newest first); one audit entry per read, naming what was read.

    ``extra_sections`` names what the caller decrypts next to it under the same read (the lab
    work, which lives in another app), so the audit entry names everything the page showed."""
    rec = PatientRecord(patient=patient, demographics=patient.unseal_all())
    names = ["diagnoses", "prescriptions", "appointments"] + (["notes"] if include_notes else [])
    for name in names:
        part = SECTION_READERS[name](patient, None, limit)
        setattr(rec, name, part.rows)
        rec.more[name] = part.next
    _phi_read(
        acting_user,
        patient,
        via=via,
        client=client,
        sections=["demographics", *names, *extra_sections],
    )
    return rec


def read_record_section(
    acting_user: User,
    patient: Patient,
    read: SectionReader,
    *,
    via: str,
    sections: Sequence[str],
    before: Cursor | None,
    client: ClientInfo = NO_CLIENT,
    limit: int = RECORD_PAGE_SIZE,
) -> Slice[Any]:
    """One more slice of one section ("show more"): a PHI read, audited like the record page
    (an alert under break-glass), naming the section and where the slice starts. ``read`` is
    one of :data:`SECTION_READERS` or a registered record part's reader."""
    part = read(patient, before, limit)
    _phi_read(acting_user, patient, via=via, client=client, sections=sections, before=before)
    return part


def read_listing(
    acting_user: User,
    rows: Sequence[tuple[PhiModel, Sequence[str]]],
    *,
    purpose: str,
    client: ClientInfo = NO_CLIENT,
) -> list[dict[str, str | None]]:
    """Decrypt a few columns of many rows for a list page (names on a doctor's patient list,
    appointment reasons): one audit entry for the whole page rather than one per row, naming
    every patient it touched. The result is parallel to ``rows``; a value that does not
    authenticate is None (shown as tampered)."""
    values = [{column: obj.unseal_or_none(column) for column in columns} for obj, columns in rows]
    if rows:
        patient_ids = sorted({str(obj.phi_patient_id()) for obj, _ in rows})
        record(
            "phi.list",
            actor=acting_user,
            # A page about one patient (their own appointments) belongs in their history.
            patient_id=patient_ids[0] if len(patient_ids) == 1 else "",
            client=client,
            details={
                "purpose": purpose,
                "patients": patient_ids,
                "fields": sorted(
                    {f"{obj._meta.label_lower}.{c}" for obj, columns in rows for c in columns}
                ),
            },
        )
    return values
