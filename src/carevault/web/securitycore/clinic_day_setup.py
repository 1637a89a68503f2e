"""The clinic the recorded day plays in: staff, patients, care teams and waiting lab requests,
created in a fresh data directory before the server starts (carevault.web.securitycore.
clinic_day_recorder).

The security layer is switched off while the clinic is built: creating forty patients is the
set-up of the day, not something anybody did on it, and its events would open the log with an
administrator writing at a rate no person types.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.core.management import call_command
from django.db import transaction

from carevault.web.accounts.models import Role, User
from carevault.web.clinic import actions as clinic
from carevault.web.labs import actions as labs

# Usernames of the cast (e-mail addresses are what people type by mistake in the name field).
OFFICER = "officer.hale"
ROUNDS_DOCTOR = "dr.okafor"
WARD_DOCTORS = ("dr.lindqvist", "dr.moreau")
NIGHT_DOCTOR = "dr.tanaka"
LABTECHS = ("lab.ferreira", "lab.nowak")
PATIENT_ACCOUNTS = ("pt.amara", "pt.bruno", "pt.chen", "pt.dita", "pt.emil", "pt.fumiko")
EMAIL_DOMAIN = "clinic.example"

_FIRST = ("Amara", "Bruno", "Chen", "Dita", "Emil", "Fumiko", "Gus", "Hana", "Ivo", "Jade")
_LAST = ("Okoye", "Rossi", "Wei", "Sari", "Berg", "Ito", "Klein", "Novak", "Diaz", "Moss")


@dataclass
class Clinic:
    """Identifiers the recorder needs (no PHI: usernames and random record ids)."""

    password: str
    rounds_patients: list[str] = field(default_factory=list)
    ward_patients: list[str] = field(default_factory=list)
    night_patients: list[str] = field(default_factory=list)
    lab_requests: list[str] = field(default_factory=list)


def build(password: str, *, rounds: int = 40, lab_batch: int = 12) -> Clinic:
    """Migrate and create the clinic (the data directory must be empty)."""
    call_command("migrate", interactive=False, verbosity=0)
    events, settings.SECURITY_EVENTS = settings.SECURITY_EVENTS, False
    try:
        return _build(password, rounds=rounds, lab_batch=lab_batch)
    finally:
        settings.SECURITY_EVENTS = events


@transaction.atomic
def _build(password: str, *, rounds: int, lab_batch: int) -> Clinic:
    def person(username: str, role: str, display: str = "") -> User:
        user = User(
            username=username,
            role=role,
            display_name=display or username,
            email=f"{username}@{EMAIL_DOMAIN}",
        )
        user.set_password(password)
        user.save()
        return user

    officer = person(OFFICER, Role.ADMIN, "Security Officer")
    rounds_doctor = person(ROUNDS_DOCTOR, Role.DOCTOR)
    ward = [person(name, Role.DOCTOR) for name in WARD_DOCTORS]
    night = person(NIGHT_DOCTOR, Role.DOCTOR)
    for name in LABTECHS:
        person(name, Role.LABTECH)
    out = Clinic(password)
    born = dt.date(1950, 1, 1)
    accounts = {name: person(name, Role.PATIENT) for name in PATIENT_ACCOUNTS}
    account_names = list(accounts)
    total = max(rounds, len(account_names)) + 6
    for i in range(total):
        name = f"{_FIRST[i % len(_FIRST)]} {_LAST[(i * 3 + i // 10) % len(_LAST)]}"
        user = accounts[account_names[i]] if i < len(account_names) else None
        patient = clinic.do_create_patient(
            officer, name=name, birth_date=born + dt.timedelta(days=211 * i), user=user
        )
        pid = str(patient.pk)
        if i < rounds:
            clinic.do_assign_doctor(officer, rounds_doctor, patient)
            out.rounds_patients.append(pid)
        if i % 3 == 0 or i < len(account_names):
            for doctor in ward:
                clinic.do_assign_doctor(officer, doctor, patient)
            out.ward_patients.append(pid)
        if i % 5 == 0:
            clinic.do_assign_doctor(officer, night, patient)
            out.night_patients.append(pid)
        if len(out.lab_requests) < lab_batch:
            request = labs.do_request_lab_test(rounds_doctor, patient, test="Full blood count")
            out.lab_requests.append(str(request.pk))
    return out
