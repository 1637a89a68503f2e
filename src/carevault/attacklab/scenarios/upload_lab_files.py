"""Hostile files at the lab's upload form: wrong types, oversized, polyglots, traversal names,
and zip bombs.

The attacker holds a lab technician's account (``labtech1``: a stolen password, or a
technician gone bad) and posts results with files to lab requests a doctor ordered that
morning (an honest doctor on a ward computer orders them first). Two scenarios:

``upload.lab-files``
    * files the server may store (their content *is* a PDF or PNG) but that are also something
      else: a PDF that is a web page with a script, a PNG carrying a script, a PDF whose stream
      inflates to 64 MB; sent under traversal names (``../../x.html``, ``/etc/x.png``,
      ``..\\..\\x.pdf``, fullwidth dots and slash), a right-to-left-override name and a NUL byte
      in the name; and traversal in the download address;
    * files it must refuse: a web page, a program, an empty file, a PNG claiming to be a PDF, a
      web page named ``.pdf``, and a PDF just over the size limit the form states.

    Held: every refused file gets a clear 4xx (or the AI layer ends the session first), nothing
    answers 5xx; every stored file is served back only as an attachment with ``nosniff``, under
    a name without directories and a safe extension; no file carrying the sender's name appears
    in the data directory or outside it (checked in the files an attacker holding the data
    directory would see); the server is still healthy.

``upload.zip-bomb``
    A zip and a gzip of a few hundred kilobytes that inflate to 256 MB, as lab files (named
    ``.pdf`` and ``.zip``), and a gzip bomb sent as a login packet with
    ``Content-Encoding: gzip``. Held: each refused with a 4xx, quickly (the server inflates
    nothing), and the server still healthy.
"""

from __future__ import annotations

import secrets
import time

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.attacklab.target import AttackClient
from carevault.client import LoginFailed

from ._lab_session import Answer, healthy, names_outside, order_tests, pending_requests, upload
from ._payloads import (
    Part,
    attachment_ok,
    executable_stub,
    gzip_bomb,
    links,
    minimal_pdf,
    pdf_flate_bomb,
    pdf_html_polyglot,
    png_with_script,
    size_limit,
    zip_bomb,
)

TECH = "labtech1"
DOCTOR = "doctor1"
DEFAULT_LIMIT = 10 * 1024 * 1024  # settings.LAB_UPLOAD_MAX_BYTES, if the form does not say
SAFE_TYPES = ("application/pdf", "image/png", "image/jpeg")
TRAVERSAL_PATHS = (
    "/labs/files/..%2f..%2f..%2fetc%2fpasswd/",
    "/labs/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/labs/files/....//....//etc/passwd/",
)


class _Lab:
    """The attacker's lab session: logs in again when the server ends it (once per upload)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.client: AttackClient = ctx.client(0)
        self.logins = 0
        self.cut = 0
        self.login()

    def login(self) -> bool:
        self.client = self.ctx.client(0)
        try:
            where = self.client.login(TECH, self.ctx.password(TECH))
        except (LoginFailed, RuntimeError):
            return False
        self.logins += 1
        return "/accounts/security/" not in where  # a second factor asked: the account is held

    def post(self, request_id: str, files: list[Part]) -> Answer:
        answer = upload(self.client, request_id, files)
        if answer.verdict == "cut":
            self.cut += 1
            if self.login():
                answer = upload(self.client, request_id, files)
        return answer


def _setup(ctx: Context, tests: int) -> tuple[_Lab, list[str], str]:
    marker = "cvlab" + secrets.token_hex(4)
    ctx.accounts.add(TECH)
    ctx.honest_accounts.add(DOCTOR)
    doctor = ctx.honest_client(1)
    doctor.login(DOCTOR, ctx.password(DOCTOR))
    order_tests(doctor, tests, marker)
    lab = _Lab(ctx)
    return lab, pending_requests(lab.client, marker), marker


def _stored_files_check(lab: _Lab, request_id: str, findings: list[str]) -> tuple[int, int]:
    """Download every file of the request's result; (files checked, files served unsafely)."""
    page = lab.client.get(f"/labs/requests/{request_id}/")
    unsafe = checked = 0
    for file_id in links(page.body, "/labs/files/"):
        answer = lab.client.get(f"/labs/files/{file_id}/")
        checked += 1
        problems = attachment_ok(answer.headers)
        content_type = answer.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if answer.status != 200:
            problems.append(f"download answered HTTP {answer.status}")
        elif content_type not in SAFE_TYPES:
            problems.append(f"served as {content_type or 'no type'}")
        if problems:
            unsafe += 1
            findings.append(f"a stored upload was served unsafely: {'; '.join(problems)}")
    return checked, unsafe


def run_lab_files(ctx: Context) -> Outcome:
    lab, requests, marker = _setup(ctx, 2)
    if len(requests) < 2:
        return Outcome(held=False, findings=["the doctor's test orders did not reach the lab"])
    findings: list[str] = []
    verdicts: dict[str, str] = {}
    form = lab.client.get(f"/labs/requests/{requests[0]}/")
    limit = size_limit(form.body) or DEFAULT_LIMIT

    # 1. Files the server may store: their content is what they claim, their names are not.
    stored_batch = [
        Part("files", f"../../{marker}-a.html", "application/pdf", pdf_html_polyglot()),
        Part("files", f"/etc/{marker}-b.png", "image/png", png_with_script()),
        Part("files", f"..\\..\\{marker}-c.pdf", "application/pdf", pdf_flate_bomb()),
        Part("files", f"{marker}-d\u202efdp.exe", "application/pdf", minimal_pdf()),
        # Fullwidth dots and solidus: "../" once a server normalises the name with NFKC.
        Part("files", f"\uff0e\uff0e\uff0f{marker}-f.pdf", "application/pdf", minimal_pdf()),
    ]
    first = lab.post(requests[0], stored_batch)
    verdicts["polyglots with traversal names"] = first.verdict
    second = lab.post(
        requests[1], [Part("files", f"{marker}-e.pdf\x00.html", "application/pdf", minimal_pdf())]
    )
    verdicts["NUL byte in the name"] = second.verdict

    # 2. Files it must refuse (checked before anything is written, whatever the request).
    target = requests[1] if second.verdict != "accepted" else requests[0]
    oversized = minimal_pdf(b"%" + b"A" * (limit + 4096) + b"\n")
    refused_cases = {
        "a web page": Part("files", "report.html", "text/html", b"<html>" + b"x" * 64 + b"</html>"),
        "a web page named .pdf": Part(
            "files", "report.pdf", "application/pdf", b"<html><script>alert(1)</script></html>"
        ),
        "a PNG claiming to be a PDF": Part(
            "files", "scan.pdf", "application/pdf", png_with_script()
        ),
        "a program named .png": Part("files", "scan.png", "image/png", executable_stub()),
        "an empty file": Part("files", "empty.pdf", "application/pdf", b""),
        "a PDF just over the limit": Part("files", "big.pdf", "application/pdf", oversized),
    }
    answers: dict[str, Answer] = {}
    for what, part in refused_cases.items():
        if not ctx.within_bounds(reserve=6):
            findings.append(f"stopped before {what!r} (bounds)")
            break
        answers[what] = lab.post(target, [part])
        verdicts[what] = answers[what].verdict

    # 3. What was stored: served back safely? written only under the server's own names?
    checked = unsafe = 0
    if lab.cut:
        lab.login()  # a fresh session to read back what was stored
    for request_id, answer in ((requests[0], first), (requests[1], second)):
        if answer.verdict == "accepted":
            c, u = _stored_files_check(lab, request_id, findings)
            checked, unsafe = checked + c, unsafe + u
    stored = len(stored_batch) * (first.verdict == "accepted") + (second.verdict == "accepted")
    if checked < stored:
        findings.append(f"only {checked} of {stored} stored files could be read back")
    # Traversal in the download address itself: never a file of the machine.
    for path in TRAVERSAL_PATHS:
        probe = lab.client.get(path)
        verdicts[f"GET {path}"] = f"HTTP {probe.status}"
        if probe.status < 400 and b"root:" in probe.body:
            unsafe += 1
            findings.append(f"GET {path} served a file of the machine")
    outside: list[str] = []
    if ctx.files is not None:
        outside = names_outside(ctx.files.data_dir, marker)
        if outside:
            findings.append(f"{len(outside)} file(s) named by the sender were written to disk")
    alive = healthy(lab.client)

    accepted_bad = [w for w, a in answers.items() if a.verdict == "accepted"]
    errors = [w for w, v in verdicts.items() if v == "error"]
    findings.insert(
        0,
        f"{sum(a.verdict == 'refused' for a in answers.values())} of {len(answers)} disallowed "
        f"files refused with a 4xx, {lab.cut} upload(s) met an ended session; "
        f"{checked} stored file(s) downloaded, {unsafe} served unsafely",
    )
    findings += [f"the server accepted {w}" for w in accepted_bad]
    findings += [f"the server failed (5xx) on {w}" for w in errors]
    if not alive:
        findings.append("the server no longer answers /healthz")
    defences = []
    if any(a.verdict == "refused" for a in answers.values()):
        defences.append("upload check")
    if lab.cut:
        defences.append("session check")
    if checked and not unsafe:
        defences.append("input validation")
    held = not accepted_bad and not errors and not unsafe and not outside and alive
    return Outcome(
        held=held,
        defences=defences,
        findings=findings,
        metrics={
            "verdicts": verdicts,
            "size_limit_bytes": limit,
            "stored_files_checked": checked,
            "sessions_ended": lab.cut,
        },
    )


def run_zip_bomb(ctx: Context) -> Outcome:
    lab, requests, _marker = _setup(ctx, 1)
    if not requests:
        return Outcome(held=False, findings=["the doctor's test order did not reach the lab"])
    expanded = (64 if ctx.quick else 256) << 20
    bombs = {
        "a zip bomb named .zip": Part(
            "files", "results.zip", "application/zip", zip_bomb(expanded)
        ),
        "a zip bomb named .pdf": Part("files", "report.pdf", "application/pdf", zip_bomb(expanded)),
        "a gzip bomb named .pdf.gz": Part(
            "files", "report.pdf.gz", "application/gzip", gzip_bomb(expanded)
        ),
    }
    findings: list[str] = []
    verdicts: dict[str, str] = {}
    timings: dict[str, float] = {}
    for what, part in bombs.items():
        answer = lab.post(requests[0], [part])
        verdicts[what] = answer.verdict
        timings[what] = round(answer.seconds, 3)
    # The login endpoint, as an anonymous sender: a gzip body it must not inflate.
    sender = ctx.client(1)
    sender.get("/accounts/login/")
    bomb = gzip_bomb(expanded)
    started = time.monotonic()
    packet = sender.request(
        "POST",
        "/accounts/login/packet/",
        body=bomb,
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Origin": sender.base_url,
            "Referer": sender.base_url + "/",
            "X-CSRFToken": sender.csrf_token() or "",
        },
    )
    what = "a gzip bomb as a login packet"
    verdicts[what] = "refused" if 400 <= packet.status < 500 else f"HTTP {packet.status}"
    timings[what] = round(time.monotonic() - started, 3)
    alive = healthy(sender)
    bad = {w: v for w, v in verdicts.items() if v not in ("refused", "cut")}
    slow = {w: t for w, t in timings.items() if t > 10}
    findings.append(
        f"{len(verdicts) - len(bad)} of {len(verdicts)} bombs refused "
        f"(slowest answer {max(timings.values()):.2f} s); packed sizes "
        f"{min(len(p.data) for p in bombs.values()) // 1024}-"
        f"{max(len(p.data) for p in bombs.values()) // 1024} kB for {expanded >> 20} MB inflated"
    )
    findings += [f"{w}: {v}" for w, v in bad.items()]
    findings += [f"{w} took {t:.1f} s to answer (inflated?)" for w, t in slow.items()]
    if not alive:
        findings.append("the server no longer answers /healthz")
    defences = ["upload check"] if any(v == "refused" for v in verdicts.values()) else []
    if lab.cut:
        defences.append("session check")
    return Outcome(
        held=not bad and not slow and alive,
        defences=defences,
        findings=findings,
        metrics={"verdicts": verdicts, "seconds": timings, "inflated_bytes": expanded},
    )


SCENARIOS = [
    Scenario(
        name="upload.lab-files",
        category="uploads",
        attacks=(
            "the lab's upload form with wrong types, a file just over the limit, PDF/HTML and "
            "PNG/script polyglots, and traversal, NUL and bidi file names"
        ),
        held_means=(
            "disallowed files refused with a 4xx, stored ones served only as nosniff "
            "attachments under safe names, nothing written outside the upload directory, no 5xx"
        ),
        bounds=Bounds(requests=120, seconds=120),
        quick_bounds=Bounds(requests=80, seconds=60),
        run=run_lab_files,
        needs_files=False,
        expect_detection=True,
    ),
    Scenario(
        name="upload.zip-bomb",
        category="uploads",
        attacks="zip and gzip bombs as lab files and a gzip-encoded login packet",
        held_means="each bomb refused with a 4xx without being inflated; the server stays healthy",
        bounds=Bounds(requests=60, seconds=90),
        quick_bounds=Bounds(requests=40, seconds=60),
        run=run_zip_bomb,
        expect_detection=True,
    ),
]
