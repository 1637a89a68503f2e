"""The benign counterpart: a clinic day replayed over HTTP by honest users only.

Shaped on the recorded clinic day (carevault/security/data/clinic_day.jsonl: staff sharing ward
workstations, about one login in two preceded by a mistyped password, a doctor working through
patients, notes written, a lab technician uploading a batch of results, patients on phones
behind one carrier address booking appointments), at the size of the demo clinic:

* ward computer 1: ``doctor1`` mistypes the password once, browses the patient list and each
  patient's record, orders tests, writes a note, logs out; ``doctor2`` logs in on the same
  computer, browses, logs out; later ``doctor1`` comes back (two typos this time);
* the lab computer: ``labtech1`` works the queue, recording a result with a PDF for each test
  ordered that morning;
* two patients' phones behind one carrier address: ``patient1`` books an appointment,
  ``patient2`` (one typo) reads their history.

Every client is honest (``ctx.honest_client``) and every account is marked honest. Held: no
honest user was stepped up (second-factor page), blocked, paused or suspended (429, 403,
redirected to the login page while logged in), every intended action succeeded, and the
server's own record (``ctx.activity()``) shows no response aimed at them. Quick mode plays a
short day (about 15 s); the full one plays the shifts twice.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.attacklab.target import AttackClient
from carevault.client import LoginFailed, Response

from ._lab_session import upload
from ._payloads import Part, links, minimal_pdf

USERS = ("doctor1", "doctor2", "labtech1", "patient1", "patient2")


@dataclass
class Day:
    ctx: Context
    actions: int = 0
    typos: int = 0
    logins: int = 0
    harmed: list[str] = field(default_factory=list)  # answers an honest user must never get
    failed: list[str] = field(default_factory=list)  # intended actions that did not happen
    done: Counter[str] = field(default_factory=Counter)  # what the day achieved, by kind

    def pause(self) -> None:
        time.sleep(self.ctx.rng.uniform(0.02, 0.12 if self.ctx.quick else 0.5))

    def login(self, client: AttackClient, user: str, typos: int = 0) -> bool:
        for _ in range(typos):
            try:
                client.login(user, self.ctx.password(user) + "x")
                self.harmed.append(f"{user}: a mistyped password was accepted")
            except LoginFailed as exc:
                if exc.retry_after:
                    self.harmed.append(f"{user}: paused after a typo")
            except RuntimeError as exc:
                self.harmed.append(f"{user}: no login challenge ({exc})")
            self.typos += 1
            self.pause()
        try:
            where = client.login(user, self.ctx.password(user))
        except (LoginFailed, RuntimeError) as exc:
            self.harmed.append(f"{user}: the right password was refused ({exc})")
            return False
        self.logins += 1
        if "/accounts/security/" in where:
            self.harmed.append(f"{user}: asked for a second factor at login")
            return False
        return True

    def check(self, user: str, what: str, response: Response, expect: tuple[int, ...]) -> bool:
        self.actions += 1
        location = response.headers.get("Location", "")
        if response.status in (401, 403, 429) or "/accounts/" in location:
            self.harmed.append(f"{user}: {what} answered HTTP {response.status} {location}".strip())
            return False
        if response.status not in expect:
            self.failed.append(f"{user}: {what} answered HTTP {response.status}")
            return False
        self.pause()
        return True

    def logout(self, client: AttackClient) -> None:
        client.logout()
        self.pause()


def _doctor_round(day: Day, client: AttackClient, user: str, typos: int, order: int) -> None:
    if not day.login(client, user, typos):
        return
    home = client.get("/clinic/doctor/")
    if not day.check(user, "the patient list", home, (200,)):
        return
    patients = links(home.body, "/clinic/patients/")
    for patient in patients:
        if day.check(user, "a record", client.get(f"/clinic/patients/{patient}/"), (200,)):
            day.done["records read"] += 1
    if patients and order:
        for i in range(order):
            answer = client.post_form(
                f"/clinic/patients/{patients[0]}/lab-requests/",
                {"test": f"Electrolytes {i + 1}", "notes": "morning round"},
            )
            if day.check(user, "ordering a test", answer, (302,)):
                day.done["tests ordered"] += 1
        note = client.post_form(
            f"/clinic/patients/{patients[0]}/notes/",
            {"body": "Seen on the morning round; stable, continue current treatment."},
        )
        if day.check(user, "writing a note", note, (302,)):
            day.done["notes written"] += 1
    day.check(user, "the API", client.get("/api/v1/me"), (200,))
    day.logout(client)


def _lab_round(day: Day, client: AttackClient) -> None:
    user = "labtech1"
    if not day.login(client, user):
        return
    queue = client.get("/labs/")
    if not day.check(user, "the queue", queue, (200,)):
        return
    for request_id in links(queue.body, "/labs/requests/")[:3]:
        page = client.get(f"/labs/requests/{request_id}/")
        if not day.check(user, "a lab request", page, (200,)):
            continue
        if b'name="values"' not in page.body:
            continue  # already has a result
        answer = upload(
            client,
            request_id,
            [Part("files", "electrolytes-report.pdf", "application/pdf", minimal_pdf())],
            values="Na 140 mmol/L\nK 4.1 mmol/L",
        )
        day.actions += 1
        if answer.verdict == "cut" or answer.status in (403, 429):
            day.harmed.append(f"{user}: recording a result answered HTTP {answer.status}")
        elif answer.verdict != "accepted":
            day.failed.append(f"{user}: recording a result answered HTTP {answer.status}")
        else:
            day.done["results recorded"] += 1
        day.pause()
    day.logout(client)


_DOCTOR_OPTION = re.compile(rb'<option value="(\d+)"')


def _patient_round(day: Day, client: AttackClient, user: str, typos: int, book: bool) -> None:
    if not day.login(client, user, typos):
        return
    home = client.get("/clinic/me/")
    if not day.check(user, "their record", home, (200,)):
        return
    if book:
        doctors = _DOCTOR_OPTION.findall(home.body)
        when = dt.datetime.now(dt.UTC) + dt.timedelta(days=3 + day.ctx.rng.randrange(20))
        if doctors:
            answer = client.post_form(
                "/clinic/me/appointments/",
                {
                    "doctor": doctors[0].decode(),
                    "starts_at": when.replace(hour=10, minute=30).strftime("%Y-%m-%dT%H:%M"),
                    "reason": "Follow-up on blood results",
                },
            )
            if day.check(user, "booking an appointment", answer, (302,)):
                day.done["appointments booked"] += 1
        else:
            day.failed.append(f"{user}: no doctor offered on the booking form")
    else:
        day.check(user, "their history", client.get("/clinic/me/history/"), (200,))
    day.logout(client)


def _activity_harm(activity: dict[str, Any] | None, ctx: Context) -> tuple[list[str], int]:
    """Responses the server aimed at honest users, and how many incidents involve them."""
    if activity is None:
        return [], 0
    honest = ctx.honest_addresses | ctx.honest_accounts
    linked = {
        e.get("incident")
        for e in activity.get("events", [])
        if e.get("incident") is not None
        and (e.get("address") in honest or e.get("actor") in ctx.honest_accounts)
    }
    harm = []
    for incident in activity.get("incidents", []):
        for response in incident.get("responses", []):
            if incident.get("id") in linked or response.get("target") in honest:
                harm.append(f"{response.get('action')} on {response.get('target')}")
    return harm, len(linked)


def run(ctx: Context) -> Outcome:
    ctx.honest_accounts.update(USERS)
    day = Day(ctx)
    ward = 1  # ward computer 1: doctors share it
    lab = 2
    phones = 3  # one carrier NAT address for the patients
    rounds = 1 if ctx.quick else 2
    for r in range(rounds):
        _doctor_round(day, ctx.honest_client(ward), "doctor1", typos=1, order=2)
        _doctor_round(day, ctx.honest_client(ward), "doctor2", typos=0, order=0)
        _patient_round(day, ctx.honest_client(phones), "patient1", typos=0, book=True)
        _lab_round(day, ctx.honest_client(lab))
        _patient_round(day, ctx.honest_client(phones), "patient2", typos=1, book=False)
        _doctor_round(day, ctx.honest_client(ward), "doctor1", typos=2 if r == 0 else 0, order=0)
    harm, incidents = _activity_harm(ctx.activity(), ctx)
    findings = [
        f"{day.logins} logins ({day.typos} mistyped passwords first), {day.actions} actions by "
        f"{len(USERS)} honest users on 3 addresses; {len(day.harmed)} harmful answers, "
        f"{len(day.failed)} actions that did not happen, {len(harm)} server responses aimed at "
        f"them, {incidents} incident(s) involving them"
    ]
    findings.append(
        ", ".join(f"{n} {what}" for what, n in sorted(day.done.items())) or "nothing done"
    )
    if not day.done["results recorded"]:
        day.failed.append("labtech1: no result recorded (no test ordered reached the lab)")
    findings += day.harmed[:6] + day.failed[:6] + harm[:6]
    return Outcome(
        held=not day.harmed and not day.failed and not harm,
        defences=[],
        findings=findings,
        metrics={
            "logins": day.logins,
            "typos": day.typos,
            "done": dict(day.done),
            "actions": day.actions,
            "harmed": len(day.harmed),
            "failed": len(day.failed),
            "responses_at_honest": len(harm),
            "incidents_involving_honest": incidents,
        },
    )


SCENARIO = Scenario(
    name="benign.clinic-day",
    category="benign",
    attacks=(
        "nothing: a clinic day of honest staff on shared ward computers and patients behind "
        "one carrier address, with typos, logins and logouts, notes, bookings and lab results"
    ),
    held_means=(
        "no honest user is stepped up, blocked, paused or suspended, every action succeeds, and "
        "the server aims no response at them"
    ),
    bounds=Bounds(requests=1, seconds=120),
    quick_bounds=Bounds(requests=1, seconds=40),
    run=run,
    expect_detection=False,
)
