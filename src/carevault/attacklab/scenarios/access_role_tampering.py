"""Role tampering: forms posted with fields the page never had.

- Registration (the one form anyone may post) with ``role=admin``, ``is_staff``,
  ``is_superuser`` and a doctor's id; the password sealed as the browser seals it.
- A patient's booking with another patient's record id, ``status=confirmed`` and a user id.
- A doctor's note, diagnosis and prescription forms (and the JSON API's note) for their own
  patient, with another doctor's patient's id, another doctor's user id, an author, a date and a
  signature added.
- The patient's account settings pages (there is no profile form) with the same fields.
- A doctor posting the officer's user forms (new user with role admin, edit self to admin).

The attacker learns the ids it forges from pages it may see (the booking form lists the doctors
by user id; doctor1's and doctor2's patient lists give record ids).

Held: the new account is a patient and reaches no staff page; the doctor and the patient keep
their roles (/api/v1/me); the officer's forms are refused; every written object is where the
page put it (the doctor's own patient, by the doctor), and nothing appears in the other
patient's record.
"""

from __future__ import annotations

import json
import re

from carevault.attacklab.bounds import Bounds, Skip
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.attacklab.target import AttackClient
from carevault.client import LoginFailed
from carevault.crypto.packets import seal_form_packet

from ._access_common import Insider, is_refusal, login, marker, recon

REGISTER = "/accounts/register/"
PRIVILEGE_FIELDS = {
    "role": "admin",
    "is_staff": "on",
    "is_superuser": "on",
    "is_active": "on",
    "groups": "1",
}
_USERNAME = re.compile(r"Your username is ([^\s:<]+)")
_DOCTOR_OPTION = re.compile(r'<option value="(\d+)"[^>]*>\s*([^<]+?)\s*</option>')


def registered_username(page: str) -> str | None:
    """The username the registration gave (the login page says it after success)."""
    found = _USERNAME.search(page)
    return found.group(1) if found else None


def doctor_options(page: str) -> dict[str, str]:
    """The booking form's doctors: user id -> label."""
    return {value: label for value, label in _DOCTOR_OPTION.findall(page)}


def _role(client: AttackClient | Insider) -> str:
    answer = client.get("/api/v1/me")
    if answer.status != 200:
        return f"HTTP {answer.status}"
    return str(answer.json().get("role"))


def run(ctx: Context) -> Outcome:
    findings: list[str] = []
    gained: list[str] = []  # privileges or misplaced writes (each a finding)
    refused = 0

    # -- registration with privilege fields ------------------------------------------------------
    anonymous = ctx.client(0)
    anonymous.get(REGISTER)
    wanted = marker(ctx, "reg").replace("-", "")[:24]
    password = f"Lab-{ctx.rng.getrandbits(64):016x}-Pw!"
    received = anonymous.challenge()
    packet = seal_form_packet(
        received.challenge, "register", REGISTER, {"password": password}, received.server_now()
    )
    fields = {
        "username": wanted,
        "name": "Lab Tamper Person",
        "birth_date": "1990-01-01",
        "email": "",
        "phone": "",
        "doctor": "2",
        "sealed_packet": json.dumps(packet),
        **PRIVILEGE_FIELDS,
    }
    answer = anonymous.post_form(REGISTER, fields)
    if answer.status in (301, 302, 303):
        page = anonymous.get(answer.headers.get("Location", "/accounts/login/"))
        username = registered_username(page.body.decode("utf-8", "replace")) or wanted
        ctx.accounts.add(username)
        newcomer = ctx.client(1)
        try:
            newcomer.login(username, password)
        except (LoginFailed, RuntimeError) as exc:
            findings.append(f"the registered account could not sign in: {exc}")
        else:
            role = _role(newcomer)
            findings.append(
                f"registration with role=admin/is_staff/is_superuser gave role {role!r}"
            )
            if role != "patient":
                gained.append(f"registration with privilege fields gave role {role!r}")
            for path in ("/security/", "/security/users/", "/api/v1/patients", "/labs/"):
                if is_refusal(newcomer.get(path)):
                    refused += 1
                else:
                    gained.append(f"the registered account opened {path}")
    else:
        findings.append(f"registration was not accepted (HTTP {answer.status}); not tested")

    # -- what the insiders may see ---------------------------------------------------------------
    ctx.accounts.update({"doctor1", "patient1"})
    doctor1 = Insider(ctx, "doctor1", 2)
    doctor2 = login(ctx, "doctor2", 3)
    mine1, mine2 = recon(doctor1.client), recon(doctor2)
    if not mine1 or not mine2:
        raise Skip("the demo's care teams are not as expected")
    own, other = mine1[0], mine2[0]
    patient1 = Insider(ctx, "patient1", 4)
    home = patient1.get("/clinic/me/").body.decode("utf-8", "replace")
    doctors = doctor_options(home)
    other_doctor = next((k for k, v in doctors.items() if "House" in v), next(iter(doctors), "3"))

    # -- booking with another patient's id -------------------------------------------------------
    reason = marker(ctx, "booking")
    starts = (
        f"{2031 + ctx.rng.randrange(5)}-{1 + ctx.rng.randrange(12):02d}-"
        f"{1 + ctx.rng.randrange(28):02d}T{9 + ctx.rng.randrange(8):02d}:{ctx.rng.choice('03')}0"
    )
    booking = {
        "doctor": other_doctor,
        "starts_at": starts,
        "reason": reason,
        "patient": other.patient_id,
        "patient_id": other.patient_id,
        "status": "confirmed",
        "user": "1",
    }
    booked = patient1.post_form("/clinic/me/appointments/", booking)
    if booked.status in (200, 302, 303):
        mine = patient1.get("/clinic/me/").body.decode("utf-8", "replace")
        if reason not in mine:
            gained.append("the tampered booking did not land with the patient who booked it")
        findings.append(f"tampered booking answered HTTP {booked.status}")
    else:
        findings.append(f"tampered booking refused (HTTP {booked.status})")

    # -- the account pages (there is no profile form: the settings pages take no user fields)
    for path in ("/accounts/security/", "/accounts/security/two-factor/"):
        answer = patient1.post_form(path, {**PRIVILEGE_FIELDS, "username": "admin"})
        findings.append(f"privilege fields posted to {path} answered HTTP {answer.status}")

    # -- clinical forms with another patient's and doctor's ids ----------------------------------
    forged = {
        "patient": other.patient_id,
        "patient_id": other.patient_id,
        "doctor": other_doctor,
        "doctor_id": other_doctor,
        "author": other_doctor,
        "created_at": "2000-01-01T00:00:00Z",
        "signature": "forged",
        "role": "admin",
    }
    note, diagnosis, drug, api_note = (
        marker(ctx, "note"),
        marker(ctx, "diagnosis"),
        marker(ctx, "drug"),
        marker(ctx, "api-note"),
    )
    base = f"/clinic/patients/{own.patient_id}"
    writes = [
        (f"{base}/notes/", {"body": note}),
        (
            f"{base}/diagnoses/",
            {"code": "Z00.0", "description": diagnosis, "data_class": "ordinary"},
        ),
        (f"{base}/prescriptions/", {"drug": drug, "dose": "1 mg", "instructions": "lab test"}),
    ]
    for path, data in writes:
        response = doctor1.post_form(path, {**data, **forged})
        if response.status not in (200, 302, 303):
            findings.append(
                f"tampered {path.rsplit('/', 2)[-2]} form answered HTTP {response.status}"
            )
    response = doctor1.post_json(
        f"/api/v1/patients/{own.patient_id}/notes",
        {"body": api_note, **forged, "patient": other.patient_id},
    )
    if response.status == 201 and response.json().get("patient") != own.patient_id:
        gained.append("the API note was filed under the forged patient id")

    # Where did they land? The owner's views of both records.
    record = doctor1.get(f"/api/v1/patients/{own.patient_id}").json()
    own_page = doctor1.get(f"{base}/").body.decode("utf-8", "replace")
    by_description = {d.get("description"): d for d in record.get("diagnoses", [])}
    by_drug = {p.get("drug"): p for p in record.get("prescriptions", [])}
    if diagnosis in by_description and by_description[diagnosis].get("doctor") != "doctor1":
        gained.append("a diagnosis was attributed to the forged doctor")
    if drug in by_drug and by_drug[drug].get("doctor") != "doctor1":
        gained.append("a prescription was attributed to the forged doctor")
    kept = sum(
        [diagnosis in by_description, drug in by_drug, note in own_page, api_note in own_page]
    )
    findings.append(
        f"{kept} of 4 tampered clinical writes kept, all under the doctor's own patient"
    )
    other_record = doctor2.get(f"/api/v1/patients/{other.patient_id}").body.decode()
    other_page = doctor2.get(f"/clinic/patients/{other.patient_id}/").body.decode()
    for value in (note, diagnosis, drug, api_note, reason):
        if value in other_record or value in other_page:
            gained.append("a tampered write landed in another doctor's patient's record")

    # -- the officer's forms, posted by a doctor -------------------------------------------------
    for path, data in (
        ("/security/users/new/", {"username": wanted + "x", "display_name": "x", "role": "admin"}),
        ("/security/users/2/", {"role": "admin", "is_active": "on"}),
        ("/security/users/3/", {"role": "admin"}),
    ):
        if is_refusal(doctor1.post_form(path, data)):
            refused += 1
        else:
            gained.append(f"a doctor's post to {path} was not refused")

    # -- roles afterwards, in fresh sessions (the server may have ended the tampering ones) -------
    for n, (who, expected) in enumerate((("doctor1", "doctor"), ("patient1", "patient"))):
        role = _role(login(ctx, who, 5 + n))
        if role != expected:
            gained.append(f"{who}'s role is now {role!r}")
    findings.append(f"{refused} privileged requests refused; roles unchanged" if not gained else "")
    findings = [f for f in findings if f] + gained
    return Outcome(
        held=not gained,
        defences=["access policy", "input validation"],
        leaked=0,
        lost=sum(1 for g in gained if "landed" in g or "attributed" in g or "filed" in g),
        findings=findings,
        metrics={"refused": refused, "gained": len(gained)},
    )


SCENARIO = Scenario(
    name="access.role-tampering",
    category="access",
    attacks="registration, booking, note, diagnosis, prescription and officer forms posted "
    "with role=admin, is_staff and other people's patient and doctor ids",
    held_means="no role changes, no staff page opens, and every write lands with the doctor's "
    "own patient under the doctor's name",
    bounds=Bounds(requests=120, seconds=60),
    quick_bounds=Bounds(requests=80, seconds=30),
    run=run,
)
