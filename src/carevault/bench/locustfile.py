"""The Locust users of ``carevault bench load`` (run by Locust in a process of its own, never
imported by CareVault: Locust monkey-patches the standard library with gevent).

Two kinds of user:

* the clinic mix, paced like staff at their desks: doctors browse their patients' records,
  write notes, order tests and run the diagnosis assistant; the lab technician works the queue
  and uploads results with a PDF; the security officer watches the dashboard; patients read
  their record and history. Each Locust user is one demo account (``fixed_count`` per class
  equals the demo cast, so no two users share an account) on a workstation address of its own.
* the capacity probes, with no think time, for the ratios: the login page alone, and one
  doctor's record page alone.

Logins are the browser's: the login page (CSRF cookie), a challenge, a sealed single-use login
packet (carevault.crypto.packets, the client side only). Each workstation speaks from an
address of its own through the one proxy hop the disposable server trusts
(``CAREVAULT_TRUSTED_PROXIES=1``), as the attack lab's honest clients do.

Every request carries a ``name`` (the page, ids folded), so Locust's statistics are per page.
A response counts as an error unless it is what the browser expects: 200 for a page, a 302
back into the application (not to ``/accounts/``: that is a session ended by the security
layer) for a form post.

Configuration comes from the JSON file named by ``CAREVAULT_LOAD_CONFIG`` (the password of the
demo accounts, feature rows for the diagnosis form, the pacing), written by bench/load.py.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from locust import HttpUser, between, constant, task
from locust.exception import StopUser

from carevault.crypto.packets import Challenge, seal_login_packet

_CONFIG_FILE = os.environ.get("CAREVAULT_LOAD_CONFIG", "")
CONFIG: dict[str, Any] = json.loads(Path(_CONFIG_FILE).read_text()) if _CONFIG_FILE else {}
PASSWORD = str(CONFIG.get("password", ""))
# Seconds between two actions of one member of staff (first and last of a uniform range).
PACE = tuple(CONFIG.get("pace", (1.0, 3.0)))
FEATURE_ROWS: list[list[float]] = CONFIG.get("feature_rows") or [[1.0] * 30]

# The names Locust reports, one per page of the mix (bench/load.py and the tests read them).
LOGIN_PAGE = "login page"
LOGIN_CHALLENGE = "login challenge"
LOGIN_PACKET = "login packet"
LOGOUT = "logout"
DOCTOR_HOME = "doctor patient list"
RECORD = "record page"
NOTE = "note write"
LAB_ORDER = "lab test order"
DIAGNOSIS_PAGE = "diagnosis page"
DIAGNOSIS_RUN = "diagnosis run"
LAB_QUEUE = "lab queue"
LAB_REQUEST = "lab request page"
LAB_UPLOAD = "lab upload"
OFFICER = "officer dashboard"
OFFICER_INCIDENTS = "officer incidents"
PATIENT_RECORD = "patient own record"
PATIENT_HISTORY = "patient history"
PATIENT_LIST_API = "patient list (API)"  # the record probe's ramp-up only

MIX_PAGES = (
    LOGIN_PAGE,
    LOGIN_CHALLENGE,
    LOGIN_PACKET,
    LOGOUT,
    DOCTOR_HOME,
    RECORD,
    NOTE,
    LAB_ORDER,
    DIAGNOSIS_PAGE,
    DIAGNOSIS_RUN,
    LAB_QUEUE,
    LAB_REQUEST,
    LAB_UPLOAD,
    OFFICER,
    OFFICER_INCIDENTS,
    PATIENT_RECORD,
    PATIENT_HISTORY,
)

_PATIENT_LINK = re.compile(r"/clinic/patients/([0-9a-f-]{36})/")
_LAB_LINK = re.compile(r"/labs/requests/([0-9a-f-]{36})/")
_ACCOUNTS_LINK = "/accounts/"

# A minimal valid one-page PDF: the lab report of an upload.
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)

_workstations = itertools.count(1)


class Staff(HttpUser):
    """A member of the demo cast at a workstation of their own; logs in on start."""

    abstract = True
    accounts: tuple[str, ...] = ()
    wait_time = between(*PACE)

    def _take_seat(self) -> None:
        """This user's account (the next of its class's) and workstation address."""
        number = next(_workstations)
        self.address = f"10.77.{number // 250}.{number % 250 + 1}"
        counter = type(self).__dict__.get("_next")
        if counter is None:
            counter = itertools.count()
            type(self)._next = counter  # type: ignore[attr-defined]
        self.username = self.accounts[next(counter) % len(self.accounts)]
        self.client.headers["X-Forwarded-For"] = self.address
        self.client.headers["User-Agent"] = "carevault-bench-load"

    # -- the browser's steps ----------------------------------------------------------------------

    def _csrf(self) -> str:
        return str(self.client.cookies.get("csrftoken") or "")

    def _form_headers(self) -> dict[str, str]:
        base = str(self.host).rstrip("/")
        return {"Origin": base, "Referer": base + "/", "X-CSRFToken": self._csrf()}

    def login(self) -> bool:
        self.client.get("/accounts/login/", name=LOGIN_PAGE)
        with self.client.get(
            "/accounts/login/challenge/", name=LOGIN_CHALLENGE, catch_response=True
        ) as answer:
            if answer.status_code != 200:
                answer.failure(f"HTTP {answer.status_code}")
                return False
            received = time.monotonic()
            challenge = Challenge.from_dict(answer.json())
        server_now = challenge.issued + (time.monotonic() - received)
        packet = seal_login_packet(challenge, self.username, PASSWORD, server_now)
        headers = {**self._form_headers(), "Accept": "application/json"}
        with self.client.post(
            "/accounts/login/packet/",
            json=packet,
            headers=headers,
            name=LOGIN_PACKET,
            catch_response=True,
            allow_redirects=False,
        ) as answer:
            ok = answer.status_code == 200 and answer.json().get("ok") is True
            if not ok or _ACCOUNTS_LINK + "security/" in str(answer.json().get("next", "")):
                answer.failure(f"login refused or stepped up: HTTP {answer.status_code}")
                return False
        return True

    def logout(self) -> None:
        self.client.post(
            "/accounts/logout/", headers=self._form_headers(), name=LOGOUT, allow_redirects=False
        )

    def page(self, path: str, name: str) -> str:
        """GET a page; anything but 200 is an error (a redirect to /accounts/ is a cut session)."""
        with self.client.get(path, name=name, catch_response=True, allow_redirects=False) as got:
            if got.status_code != 200:
                where = got.headers.get("Location", "")
                got.failure(f"HTTP {got.status_code} {where}".strip())
                return ""
            return str(got.text)

    def post_form(self, path: str, name: str, fields: dict[str, str], files: Any = None) -> bool:
        """POST a form the browser's way; it must redirect back into the application."""
        data = {"csrfmiddlewaretoken": self._csrf(), **fields}
        with self.client.post(
            path,
            data=data,
            files=files,
            headers=self._form_headers(),
            name=name,
            catch_response=True,
            allow_redirects=False,
        ) as answer:
            where = answer.headers.get("Location", "")
            if answer.status_code != 302 or _ACCOUNTS_LINK in where:
                answer.failure(f"HTTP {answer.status_code} {where}".strip())
                return False
        return True

    def on_start(self) -> None:
        self._take_seat()
        if not self.login():
            raise StopUser()

    def on_stop(self) -> None:
        self.logout()

    def relogin(self) -> None:
        """Log out and in again, as staff do between rounds (a share of the mix's logins)."""
        self.logout()
        self.client.cookies.clear()
        if not self.login():
            raise StopUser()


class Doctor(Staff):
    fixed_count = 2
    accounts = ("doctor1", "doctor2")

    def on_start(self) -> None:
        super().on_start()
        self.patients: list[str] = []
        self.refresh()

    def refresh(self) -> None:
        body = self.page("/clinic/doctor/", DOCTOR_HOME)
        self.patients = sorted(set(_PATIENT_LINK.findall(body))) or self.patients

    def patient(self) -> str | None:
        return secrets.choice(self.patients) if self.patients else None

    @task(2)
    def patient_list(self) -> None:
        self.refresh()

    @task(8)
    def record(self) -> None:
        if (pid := self.patient()) is not None:
            self.page(f"/clinic/patients/{pid}/", RECORD)

    @task(2)
    def note(self) -> None:
        if (pid := self.patient()) is not None:
            body = "Seen on the ward round; stable, continue the current plan."
            self.post_form(f"/clinic/patients/{pid}/notes/", NOTE, {"body": body})

    @task(1)
    def order_test(self) -> None:
        if (pid := self.patient()) is not None:
            fields = {"test": "Electrolytes", "notes": "ward round"}
            self.post_form(f"/clinic/patients/{pid}/lab-requests/", LAB_ORDER, fields)

    @task(1)
    def diagnosis(self) -> None:
        if (pid := self.patient()) is None:
            return
        path = f"/diagnosis/patients/{pid}/"
        self.page(path, DIAGNOSIS_PAGE)
        row = secrets.choice(FEATURE_ROWS)
        fields = {"model": "logistic", "lab_result": ""}
        fields.update({f"f{i}": repr(float(v)) for i, v in enumerate(row)})
        self.post_form(path, DIAGNOSIS_RUN, fields)

    @task(1)
    def next_shift(self) -> None:
        self.relogin()
        self.refresh()


class LabTechnician(Staff):
    fixed_count = 1
    accounts = ("labtech1",)

    @task(3)
    def queue(self) -> None:
        self.page("/labs/", LAB_QUEUE)

    @task(2)
    def upload(self) -> None:
        body = self.page("/labs/", LAB_QUEUE)
        for request_id in _LAB_LINK.findall(body)[:5]:
            path = f"/labs/requests/{request_id}/"
            page = self.page(path, LAB_REQUEST)
            if 'name="values"' not in page:
                continue  # already has a result
            files = [("files", ("electrolytes-report.pdf", PDF, "application/pdf"))]
            fields = {"values": "Na 140 mmol/L\nK 4.1 mmol/L", "comment": ""}
            self.post_form(path, LAB_UPLOAD, fields, files=files)
            return

    @task(1)
    def next_shift(self) -> None:
        self.relogin()


class Officer(Staff):
    fixed_count = 1
    accounts = ("admin",)

    @task(4)
    def dashboard(self) -> None:
        self.page("/security/", OFFICER)

    @task(1)
    def incidents(self) -> None:
        self.page("/security/incidents/", OFFICER_INCIDENTS)


class Patient(Staff):
    fixed_count = 3
    accounts = ("patient1", "patient2", "patient3")

    @task(3)
    def own_record(self) -> None:
        self.page("/clinic/me/", PATIENT_RECORD)

    @task(1)
    def history(self) -> None:
        self.page("/clinic/me/history/", PATIENT_HISTORY)

    @task(1)
    def next_visit(self) -> None:
        self.relogin()


MIX = (Doctor, LabTechnician, Officer, Patient)
MIX_USERS = sum(cls.fixed_count for cls in MIX)


# -- capacity probes (no think time) ---------------------------------------------------------------


class LoginPageProbe(HttpUser):
    """The login page as fast as it is served: the baseline of the ratios."""

    wait_time = constant(0)

    @task
    def login_page(self) -> None:
        self.client.get("/accounts/login/", name=LOGIN_PAGE)


class RecordPageProbe(Staff):
    """The doctors' record pages as fast as they are served (each probe user one doctor)."""

    fixed_count = 0
    accounts = Doctor.accounts
    wait_time = constant(0)

    def on_start(self) -> None:
        super().on_start()
        # The JSON list, not the doctor's page: the probe measures the record page, and its
        # ramp-up should be short.
        with self.client.get("/api/v1/patients", name=PATIENT_LIST_API, catch_response=True) as got:
            if got.status_code != 200:
                got.failure(f"HTTP {got.status_code}")
                raise StopUser()
            self.patients = [str(p["id"]) for p in got.json().get("results", [])]
        if not self.patients:
            raise StopUser()

    @task
    def record(self) -> None:
        self.page(f"/clinic/patients/{secrets.choice(self.patients)}/", RECORD)


PROBES = (LoginPageProbe, RecordPageProbe)
