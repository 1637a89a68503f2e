"""Record a clinic day from the real application: ``carevault security record-day``.

A fresh data directory gets a clinic (clinic_day_setup), a real server (gunicorn, one worker)
starts on it, and Chromium, driven by Playwright, plays the people of one day through the
ordinary pages: staff sharing ward workstations (one address, one browser), mistyped passwords
and usernames, an e-mail address typed as the username, a doctor working through forty patients,
a lab technician uploading a batch of results, night-shift logins, patients on phones behind a
carrier's NAT (several patients on one address, one moved mid-session), an officer reviewing the
dashboard. The server writes security events as it always does; when the day is over they are
read back (``scoring.event_of``, the very objects the engine scores) and written as a JSONL log.

**The clock.** A day of clicks is played in a few minutes, and the features count per minute
and per hour, so real time would make forty patients in two minutes look like scraping. Each
step of the script has its time on the clinic's day (UTC), and every event the server wrote
while a step ran is stamped at that time plus a few seconds per event, in order. The log is the
application's own events on the day's clock.

**The server's own answers.** The day is played in minutes, so the real-time login throttle
and the server's scorer would see hours of ordinary mistakes at once. The recording server gets
wide per-address throttle limits and response thresholds near 1 (``_SERVER_ENV``): it records,
it does not judge. Judging is the replay's job (carevault.security.clinic_day), with the trained
model, at the deployed thresholds.

Addresses are set through ``X-Forwarded-For`` with one trusted proxy, as a reverse proxy in
front of CareVault would set it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from carevault.security.events import Event, EventKind

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DAY_START = 1_741_046_400.0  # Tuesday 2025-03-04 00:00 UTC
TIMEOUT_MS = 20_000
# What a page shows when it refuses something (quoted when a step fails).
_PROBLEMS = ".invalid-feedback, .alert-danger:not([hidden])"

# Browsers of the day: one per device (the client hash is a hash of the User-Agent).
WARD_PC = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
LAB_PC = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
OFFICE_PC = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
HOME_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Version/18.1 Safari"
PHONES = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/131.0 Mobile Safari",
    "Mozilla/5.0 (Linux; Android 13; SM-A546B) AppleWebKit/537.36 Chrome/130.0 Mobile Safari",
)

# Addresses: the ward and lab workstations on the clinic LAN, the officer's desk, a doctor's
# home broadband, and a mobile carrier's CGNAT (100.64.0.0/10) that puts many phones on one.
WARD_A = "10.20.1.15"
WARD_B = "10.20.1.16"
LAB = "10.20.2.7"
OFFICE = "10.20.9.2"
HOME = "84.19.113.42"
CARRIER = ("100.64.12.7", "100.64.12.7", "100.64.40.19")
CARRIER_MOVED = "100.65.3.201"

# The recording server: wide real-time limits, no responses (see the module docstring).
_SERVER_ENV = {
    "CAREVAULT_TRUSTED_PROXIES": "1",
    "CAREVAULT_SECURITY_THRESHOLDS": "0.996,0.997,0.998,0.999",
    "CAREVAULT_SECURITY_TELEMETRY_SECONDS": "0",
    "CAREVAULT_LOGIN_ADDRESS_MAX_FAILURES": "1000",
    "CAREVAULT_LOGIN_ADDRESS_MAX_USERNAMES": "1000",
    "CAREVAULT_LOGIN_BACKOFF_AFTER": "50",
    "CAREVAULT_LOGIN_SUSPEND_AFTER": "100",
}


@dataclass
class Step:
    at: float  # seconds after the day's midnight
    name: str
    run: Callable[[], None]
    spacing: float = 3.0  # seconds between the events the step wrote, on the day's clock
    real_start: float = 0.0
    real_end: float = 0.0


@dataclass
class Script:
    steps: list[Step] = field(default_factory=list)

    def at(self, hhmm: str, name: str, run: Callable[[], None], spacing: float = 3.0) -> None:
        hours, _, rest = hhmm.partition(":")
        minutes, _, seconds = rest.partition(":")
        at = int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
        self.steps.append(Step(float(at), name, run, spacing))


class Desk:
    """One person on one device: a browser context with the device's address and browser."""

    def __init__(self, browser: Any, base_url: str, agent: str, address: str, password: str):
        self.context = browser.new_context(
            base_url=base_url,
            user_agent=agent,
            extra_http_headers={"X-Forwarded-For": address},
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.password = password

    def move(self, address: str) -> None:
        """The carrier's NAT hands the phone another address."""
        self.context.set_extra_http_headers({"X-Forwarded-For": address})

    def _submit(self, username: str, password: str) -> None:
        page = self.page
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()

    def fail(self, username: str, password: str | None = None) -> None:
        """A sign-in that fails: a wrong password, a mistyped or an e-mail username."""
        self._submit(username, password or self.password[::-1])
        self.page.locator("#login-error").filter(has_text="Login failed").wait_for()

    def login(self, username: str) -> None:
        self._submit(username, self.password)
        self.page.wait_for_url(lambda url: "/accounts/login/" not in url)

    def logout(self) -> None:
        page = self.page
        button = page.get_by_role("button", name="Log out")
        if button.count():
            button.first.click()
            page.wait_for_load_state()

    def open(self, path: str) -> None:
        self.page.goto(path)

    def patient(self, pid: str) -> None:
        self.page.goto(f"/clinic/patients/{pid}/")

    def note(self, pid: str, text: str) -> None:
        page = self.page
        if f"/clinic/patients/{pid}/" not in page.url:
            self.patient(pid)
        page.locator("#section-notes summary").click()
        page.get_by_label("Note", exact=True).fill(text)
        with page.expect_response(lambda r: "/notes/" in r.url):
            page.get_by_role("button", name="Add note").click()

    def lab_result(self, request_id: str, pdf: bytes, number: int) -> None:
        page = self.page
        page.goto(f"/labs/requests/{request_id}/")
        page.get_by_label("Result values").fill(f"Hb 13.{number % 10} g/dL\nWBC 6.{number} 10^9/L")
        page.get_by_label("Files").set_input_files(
            files=[{"name": f"fbc-{number:02d}.pdf", "mimeType": "application/pdf", "buffer": pdf}]
        )
        with page.expect_navigation():
            page.get_by_role("button", name="Sign and submit").click()
        refused = page.locator(_PROBLEMS).all_inner_texts()
        if refused:
            raise RuntimeError(f"the lab result was refused: {refused}")

    def close(self) -> None:
        self.context.close()


# What would point the recording at a deployment's database, shared store or key.
_DEPLOYMENT_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "CAREVAULT_MASTER_KEY",
    "CAREVAULT_MASTER_KEY_FILE",
    "CAREVAULT_CACHE_PREFIX",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(data_dir: Path) -> Iterator[str]:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in _DEPLOYMENT_VARIABLES},
        **_SERVER_ENV,
        "CAREVAULT_DATA_DIR": str(data_dir),
        "DJANGO_SETTINGS_MODULE": "carevault.web.settings",
    }
    log = (data_dir / "server.log").open("wb")
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "carevault.web.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--threads",
        "4",
    ]
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2):  # noqa: S310
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the recording server did not start (see {data_dir / 'server.log'})"
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def script(short: bool, desks: Callable[[str, str], Desk], clinic: Any, pdf: bytes) -> Script:
    """The people of the day and what they do, on the day's clock (UTC)."""
    from .clinic_day_setup import (
        EMAIL_DOMAIN,
        LABTECHS,
        NIGHT_DOCTOR,
        OFFICER,
        PATIENT_ACCOUNTS,
        ROUNDS_DOCTOR,
        WARD_DOCTORS,
    )

    s = Script()
    ward = clinic.ward_patients
    night_pts = clinic.night_patients
    rounds = clinic.rounds_patients
    labs = clinic.lab_requests

    # -- night shift: the night doctor signs in on ward PC A three times ---------------------------
    night = desks(WARD_PC, WARD_A)
    logins = ("00:20", "02:45", "05:10") if not short else ("02:45",)
    for n, hhmm in enumerate(logins):
        h, m = int(hhmm[:2]), int(hhmm[3:])
        if n == 1:
            s.at(hhmm, "night: mistyped password", lambda: night.fail(NIGHT_DOCTOR))
            m += 1
        s.at(f"{h:02d}:{m:02d}", "night: login", lambda: night.login(NIGHT_DOCTOR))
        for k, pid in enumerate(night_pts[: 3 if not short else 2]):
            s.at(f"{h:02d}:{m + 3 + 4 * k:02d}", "night: read", partial(night.patient, pid))
        s.at(f"{h:02d}:{m + 20:02d}", "night: logout", night.logout)

    # -- ward PC A: two doctors share it; an e-mail as username, typos ----------------------------
    lind = desks(WARD_PC, WARD_A)
    mor = desks(WARD_PC, WARD_A)
    lindqvist, moreau = WARD_DOCTORS
    s.at("07:31", "ward A: lindqvist typo", lambda: lind.fail(lindqvist))
    s.at("07:31:40", "ward A: lindqvist login", lambda: lind.login(lindqvist))
    s.at("07:40", "ward A: moreau e-mail as username", lambda: mor.fail(f"{moreau}@{EMAIL_DOMAIN}"))
    s.at("07:40:30", "ward A: moreau e-mail again", lambda: mor.fail(f"{moreau}@{EMAIL_DOMAIN}"))
    s.at("07:41:10", "ward A: moreau typo", lambda: mor.fail(moreau))
    s.at("07:41:50", "ward A: moreau login", lambda: mor.login(moreau))
    n_ward = len(ward) if not short else 3
    for k, pid in enumerate(ward[:n_ward]):
        minute = 45 + 6 * k
        s.at(
            f"{7 + minute // 60:02d}:{minute % 60:02d}",
            "ward A: read",
            partial(lind.patient, pid),
        )
        minute += 3
        s.at(
            f"{7 + minute // 60:02d}:{minute % 60:02d}",
            "ward A: read",
            partial(mor.patient, pid),
        )
        if k % 3 == 1:
            minute += 1
            s.at(
                f"{7 + minute // 60:02d}:{minute % 60:02d}",
                "ward A: note",
                partial(mor.note, pid, "Reviewed on the ward round; plan unchanged."),
            )
    if not short:
        # After lunch: a burst of typos on the shared PC, then the right password.
        s.at("12:20", "ward A: moreau logout", mor.logout)
        s.at("12:58", "ward A: lindqvist logout", lind.logout)
        s.at("13:02", "ward A: lindqvist typo 1", lambda: lind.fail(lindqvist))
        s.at("13:02:20", "ward A: lindqvist typo 2", lambda: lind.fail(lindqvist))
        s.at("13:02:45", "ward A: lindqvist typo 3", lambda: lind.fail(lindqvist))
        s.at("13:03:30", "ward A: lindqvist login", lambda: lind.login(lindqvist))
        s.at("13:04", "ward A: moreau mistyped name", lambda: mor.fail(moreau[:-1]))
        s.at("13:04:30", "ward A: moreau back in", lambda: mor.login(moreau))
        for k, pid in enumerate(ward[:6]):
            s.at(f"13:{10 + 7 * k:02d}", "ward A: afternoon", partial(lind.patient, pid))

    # -- ward PC B: the doctor working through forty patients -------------------------------------
    oka = desks(WARD_PC, WARD_B)
    s.at("08:28", "rounds: mistyped username", lambda: oka.fail("dr.okafr"))
    s.at("08:28:40", "rounds: login", lambda: oka.login(ROUNDS_DOCTOR))
    s.at("08:30", "rounds: list", lambda: oka.open("/clinic/doctor/"))
    n_rounds = len(rounds) if not short else 5
    start = 8 * 60 + 32
    for k, pid in enumerate(rounds[:n_rounds]):
        minute = start + 8 * k + (45 if k >= 20 else 0)  # a lunch break after twenty
        if k == 20:
            s.at(f"{(minute - 50) // 60:02d}:{(minute - 50) % 60:02d}", "rounds: lunch", oka.logout)
            s.at(
                f"{(minute - 3) // 60:02d}:{(minute - 3) % 60:02d}",
                "rounds: back",
                lambda: oka.login(ROUNDS_DOCTOR),
            )
        s.at(f"{minute // 60:02d}:{minute % 60:02d}", "rounds: patient", partial(oka.patient, pid))
        if k % 4 == 2:
            minute += 4
            s.at(
                f"{minute // 60:02d}:{minute % 60:02d}",
                "rounds: note",
                partial(oka.note, pid, "Seen on rounds. Observations stable."),
            )
    s.at("15:30", "rounds: logout", oka.logout)

    # -- the lab: a batch of results, then a colleague with two typos -----------------------------
    ferreira, nowak = LABTECHS
    fer = desks(LAB_PC, LAB)
    s.at("10:02", "lab: login", lambda: fer.login(ferreira))
    s.at("10:03", "lab: queue", lambda: fer.open("/labs/"))
    n_labs = len(labs) if not short else 2
    for k, rid in enumerate(labs[:n_labs]):
        minute = 5 + 3 * k
        s.at(
            f"10:{minute:02d}",
            "lab: upload",
            partial(fer.lab_result, rid, pdf, k + 1),
        )
    if not short:
        s.at("11:00", "lab: ferreira logout", fer.logout)
        now = desks(LAB_PC, LAB)
        s.at("14:01", "lab: nowak typo", lambda: now.fail(nowak))
        s.at("14:01:30", "lab: nowak typo again", lambda: now.fail(nowak))
        s.at("14:02", "lab: nowak login", lambda: now.login(nowak))
        s.at("14:03", "lab: queue", lambda: now.open("/labs/"))

    # -- the officer reviews the dashboard ---------------------------------------------------------
    off = desks(OFFICE_PC, OFFICE)
    s.at("08:05", "officer: login", lambda: off.login(OFFICER))
    s.at("08:06", "officer: dashboard", lambda: off.open("/security/"))
    if not short:
        s.at("12:15", "officer: incidents", lambda: off.open("/security/incidents/"))
        s.at("16:40", "officer: dashboard", lambda: off.open("/security/"))
        s.at("16:41", "officer: audit", lambda: off.open("/security/audit/"))

    # -- the rounds doctor at home in the evening --------------------------------------------------
    if not short:
        home = desks(HOME_MAC, HOME)
        s.at("20:10", "home: login", lambda: home.login(ROUNDS_DOCTOR))
        for k, pid in enumerate(rounds[:3]):
            s.at(f"20:{12 + 3 * k:02d}", "home: read", partial(home.patient, pid))

    # -- patients on phones behind the carrier's NAT ----------------------------------------------
    n_patients = len(PATIENT_ACCOUNTS) if not short else 2
    for k, username in enumerate(PATIENT_ACCOUNTS[:n_patients]):
        phone = desks(PHONES[k % len(PHONES)], CARRIER[k % len(CARRIER)])
        hour = 18 + k // 2
        minute = 5 + 20 * (k % 2)
        at = f"{hour:02d}:{minute:02d}"
        if k == 2:
            s.at(at, "phone: typo", partial(phone.fail, username))
            s.at(f"{hour:02d}:{minute:02d}:30", "phone: typo", partial(phone.fail, username))
        if k == 4:
            s.at(
                at,
                "phone: e-mail as username",
                partial(phone.fail, f"{username}@mail.example"),
            )
        s.at(f"{hour:02d}:{minute + 1:02d}", "phone: login", partial(phone.login, username))
        s.at(f"{hour:02d}:{minute + 2:02d}", "phone: home", partial(phone.open, "/clinic/me/"))
        if k == 1:
            s.at(
                f"{hour:02d}:{minute + 4:02d}",
                "phone: NAT moved",
                partial(phone.move, CARRIER_MOVED),
            )
        s.at(
            f"{hour:02d}:{minute + 5:02d}",
            "phone: history",
            partial(phone.open, "/clinic/me/history/"),
        )
        if k == 1:
            # The session is bound to its address: after the move the patient signs in again.
            s.at(
                f"{hour:02d}:{minute + 6:02d}",
                "phone: login again",
                partial(phone.login, username),
            )
            s.at(
                f"{hour:02d}:{minute + 7:02d}",
                "phone: history",
                partial(phone.open, "/clinic/me/history/"),
            )
    s.steps.sort(key=lambda step: step.at)
    return s


def retime(rows: list[tuple[float, Event]], steps: list[Step]) -> list[Event]:
    """Put each event on the day's clock: the step it was written in, plus its place there."""
    import dataclasses

    ordered = sorted(steps, key=lambda st: st.real_start)
    out: list[Event] = []
    placed: dict[int, int] = {}
    for real_at, event in sorted(rows, key=lambda r: r[0]):
        owner = 0
        for i, st in enumerate(ordered):
            if st.real_start <= real_at:
                owner = i
            else:
                break
        n = placed.get(owner, 0)
        placed[owner] = n + 1
        st = ordered[owner]
        out.append(dataclasses.replace(event, at=DAY_START + st.at + st.spacing * n))
    out.sort(key=lambda e: e.at)
    return out


def record(out: Path, *, short: bool = False, keep: Path | None = None) -> dict[str, Any]:
    """Build the clinic, play the day, write the log; returns what was recorded."""
    work = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="carevault-day-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["CAREVAULT_DATA_DIR"] = str(work)
    # The clinic is built in its own data directory, on its own SQLite database and store: a
    # configured DATABASE_URL or REDIS_URL (a deployment's) must never receive the day's people.
    for name in _DEPLOYMENT_VARIABLES:
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "carevault.web.settings")
    import secrets

    import django

    django.setup()
    from playwright.sync_api import sync_playwright

    from carevault.security import clinic_day
    from carevault.web.demo import DEMO_PDF

    from . import clinic_day_setup
    from .models import SecurityEvent
    from .scoring import event_of

    password = "day-" + secrets.token_urlsafe(12)
    started = time.perf_counter()
    clinic = clinic_day_setup.build(
        password, rounds=40 if not short else 5, lab_batch=12 if not short else 2
    )
    from django.db import connections

    connections.close_all()
    first_pk = SecurityEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    connections.close_all()
    with _server(work) as url:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        playwright = sync_playwright().start()
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            opened: list[Desk] = []

            def desks(agent: str, address: str) -> Desk:
                desk = Desk(browser, url, agent, address, password)
                opened.append(desk)
                return desk

            day = script(short, desks, clinic, DEMO_PDF)
            for step in day.steps:
                step.real_start = time.time()
                try:
                    step.run()
                except Exception as exc:
                    shown = " | ".join(
                        f"{d.page.url}: {' / '.join(d.page.locator(_PROBLEMS).all_inner_texts())}"
                        for d in opened
                    )
                    raise RuntimeError(
                        f"step {step.name!r} at {step.at:.0f} s failed: {exc}\npages: {shown}"
                    ) from exc
                step.real_end = time.time()
            # Let the server finish writing what the last page asked for.
            time.sleep(0.5)
            for desk in opened:
                desk.close()
            browser.close()
        finally:
            playwright.stop()
    rows = [
        (row.at.timestamp(), event_of(row))
        for row in SecurityEvent.objects.filter(pk__gt=first_pk).order_by("at", "pk")
    ]
    events = retime([(at, e) for at, e in rows if e.kind is not EventKind.HOST], day.steps)
    clinic_day.write(out, events)
    summary = clinic_day.describe(events)
    summary.update(
        {"out": str(out), "steps": len(day.steps), "seconds": time.perf_counter() - started}
    )
    summary["data_dir"] = str(work)
    return summary
