"""SQL injection probes on every form field and query parameter the pages take.

Classic payloads (quote breaks, ``OR 1=1``, ``UNION SELECT``, stacked ``; DROP TABLE``, comment
tricks) and time-based ones (``SLEEP``, ``pg_sleep``, ``WAITFOR DELAY``, SQLite's
``randomblob``) go into: the login page's ``next``, the booking form (doctor, time, reason),
the paging parameters of the doctor's home, the API's patient list, the lab queue (``page``,
``done``) and the patient's access history (``page``, ``mine``), the MRN search form, the API's
diagnosis fields, URL path segments where an id belongs, the officer's audit filters
(``action``, ``actor``, ``outcome``), user list (``role``, ``page``), encryption log filters
and risk timeline (``minutes``), a clinical note's text (the full lab only: it writes), and the
login packet's username. Each point is first timed with a harmless value (the baseline).

Held: no answer is a 5xx, no body carries database error text, no search or filter returns
more rows than its harmless baseline, no payload delays the answer by more than
:data:`DELAY_MARGIN` seconds over the point's baseline, and no username payload signs in.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.client import LoginFailed, Response

from ._access_common import Insider, recon, sql_errors_in

CLASSIC = (
    "' OR '1'='1",
    "' OR 1=1--",
    "1' UNION SELECT username, password, NULL FROM accounts_user--",
    "'; DROP TABLE clinic_patient;--",
    '" OR ""="',
    "admin'/*",
    "1 OR 1=1",
    "') OR ('a'='a",
    "1; SELECT * FROM auth_user",
    "' UNION SELECT sql, NULL FROM sqlite_master--",
    "%' OR '%'='",
    "1' AND 1=CAST((SELECT version()) AS int)--",
)
TIMING = (
    "1' AND SLEEP(5)--",
    "1'; SELECT pg_sleep(5)--",
    "1' AND 1=LIKE('ABCDEFG',UPPER(HEX(RANDOMBLOB(500000000/2))))--",
    "'; WAITFOR DELAY '0:0:5'--",
    "1) OR SLEEP(5)#",
)
# A sleep payload that worked would add about 5 s; anything under this is noise on a shared box.
DELAY_MARGIN = 2.5


def payloads(quick: bool) -> list[tuple[str, bool]]:
    """(payload, is_timing) pairs, the quick lab's few first."""
    classic = CLASSIC[:4] if quick else CLASSIC
    timing = TIMING[:2] if quick else TIMING
    return [(p, False) for p in classic] + [(p, True) for p in timing]


def delayed(elapsed: float, baseline: list[float], margin: float = DELAY_MARGIN) -> bool:
    """True when ``elapsed`` exceeds the baseline's median by more than ``margin`` seconds."""
    return elapsed - (statistics.median(baseline) if baseline else 0.0) > margin


def count_rows(body: bytes, needle: bytes) -> int:
    return body.count(needle)


@dataclass(frozen=True)
class Point:
    """One place a value goes: who sends it, how, and (optionally) how to count its rows."""

    label: str
    who: str  # a demo user, or "" for an anonymous visitor
    send: Callable[[Insider, str], Response]
    harmless: str
    rows: bytes | None = None  # count this in the body: no more than the baseline
    full_only: bool = False  # writes into the record: the full lab only


def _get(template: str) -> Callable[[Insider, str], Response]:
    return lambda c, v: c.get(template.replace("{v}", quote(v, safe="")))


def _points(p1: str) -> list[Point]:
    return [
        Point("doctor home ?page", "doctor1", _get("/clinic/doctor/?page={v}"), "1"),
        Point("API patient list ?page", "doctor1", _get("/api/v1/patients?page={v}"), "1"),
        Point(
            "MRN search form",
            "doctor1",
            lambda c, v: c.post_form("/clinic/doctor/", {"query": v}),
            "MRN-00000000",
            rows=b"/clinic/patients/",
        ),
        Point("API record path segment", "doctor1", _get("/api/v1/patients/{v}"), "x"),
        Point("record page path segment", "doctor1", _get("/clinic/patients/{v}/"), "x"),
        Point(
            "API diagnosis fields",
            "doctor1",
            lambda c, v: c.post_json(
                f"/api/v1/patients/{p1}/diagnoses", {"features": {"mean radius": v}, "model": v}
            ),
            "x",
        ),
        Point(
            "access history ?page&mine",
            "patient1",
            _get("/clinic/me/history/?page={v}&mine={v}"),
            "1",
        ),
        Point("lab queue ?page&done", "labtech1", _get("/labs/?page={v}&done={v}"), "1"),
        Point("API lab queue ?page", "labtech1", _get("/api/v1/lab/queue?page={v}"), "1"),
        Point(
            "officer audit filters",
            "admin",
            _get("/security/audit/?action={v}&actor={v}&outcome={v}&page={v}"),
            "zz-no-such",
            rows=b"<tr",
        ),
        Point(
            "officer user list ?role&page",
            "admin",
            _get("/security/users/?role={v}&page={v}"),
            "zz-no-such",
            rows=b"<tr",
        ),
        Point(
            "officer encryption log filters",
            "admin",
            _get("/security/encryption/?table={v}&suite={v}&record={v}&page={v}"),
            "zz-no-such",
            rows=b"<tr",
        ),
        Point(
            "officer risk timeline ?minutes",
            "admin",
            _get("/security/risk-timeline.json?minutes={v}"),
            "60",
        ),
        Point(
            "booking form fields",
            "patient1",
            lambda c, v: c.post_form(
                "/clinic/me/appointments/", {"doctor": v, "starts_at": v, "reason": v}
            ),
            "zz-no-such",
        ),
        Point("login ?next", "", _get("/accounts/login/?next={v}"), "/"),
        Point(
            "clinical note text",
            "doctor1",
            lambda c, v: c.post_form(f"/clinic/patients/{p1}/notes/", {"body": v}),
            "Lab note: harmless baseline text.",
            full_only=True,
        ),
    ]


def run(ctx: Context) -> Outcome:
    ctx.accounts.update({"doctor1", "patient1", "labtech1", "admin"})
    clients: dict[str, Insider] = {}
    for n, user in enumerate(("", "doctor1", "patient1", "labtech1", "admin")):
        clients[user] = Insider(ctx, user, n)
    mine = recon(clients["doctor1"].client)
    p1 = mine[0].patient_id if mine else "00000000-0000-4000-8000-000000000000"

    errors: list[str] = []  # 5xx or database error text (label; no payload echo of PHI)
    extra_rows: list[str] = []
    slow: list[str] = []
    sent = 0
    statuses: dict[int, int] = {}
    tries = payloads(ctx.quick)
    points = [p for p in _points(p1) if not (p.full_only and ctx.quick)]
    for point in points:
        client = clients[point.who]
        baseline: list[float] = []
        rows_baseline = 0
        for _ in range(2):
            started = time.monotonic()
            answer = point.send(client, point.harmless)
            baseline.append(time.monotonic() - started)
            if point.rows is not None:
                rows_baseline = max(rows_baseline, count_rows(answer.body, point.rows))
        for payload, timing in tries:
            if not ctx.within_bounds(reserve=8):
                break
            started = time.monotonic()
            answer = point.send(client, payload)
            elapsed = time.monotonic() - started
            sent += 1
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            if answer.status >= 500 or sql_errors_in(answer.body):
                errors.append(f"{point.label}: HTTP {answer.status} {sql_errors_in(answer.body)}")
            if point.rows is not None and count_rows(answer.body, point.rows) > rows_baseline:
                extra_rows.append(point.label)
            if timing and delayed(elapsed, baseline):
                slow.append(f"{point.label}: {elapsed:.1f} s against {max(baseline):.2f} s")

    # The login packet's username.
    signed_in = 0
    for i, username in enumerate(
        ("admin' --", "' OR '1'='1", "doctor1' OR 1=1--")[: 2 if ctx.quick else 3]
    ):
        if not ctx.within_bounds(reserve=4):
            break
        try:
            ctx.client(30 + i).login(username, ctx.password("admin"))
            signed_in += 1
        except (LoginFailed, RuntimeError):
            pass
        sent += 1

    findings = [
        f"{sent} payloads at {len(points)} places and the login username; statuses "
        f"{dict(sorted(statuses.items()))}"
    ]
    admin_missing = clients["admin"].sessions_ended > 3
    if admin_missing:
        findings.append("the officer's session kept ending; audit filters partly untested")
    findings += [f"server error or database text: {e}" for e in errors[:8]]
    findings += [
        f"more rows than the harmless baseline: {label}" for label in sorted(set(extra_rows))
    ]
    findings += [f"delayed by a timing payload: {s}" for s in slow[:5]]
    if signed_in:
        findings.append(f"{signed_in} SQL payloads as a username signed in")
    held = not errors and not extra_rows and not slow and not signed_in
    if held:
        findings.append("no 5xx, no database error text, no extra rows, no delay")
    ended = sum(c.sessions_ended for c in clients.values())
    return Outcome(
        held=held,
        defences=["input validation"] + (["session check"] if ended else []),
        leaked=len(set(extra_rows)),
        findings=findings,
        metrics={
            "payloads": sent,
            "errors": len(errors),
            "extra_rows": len(extra_rows),
            "delayed": len(slow),
            "statuses": statuses,
            "admin_untested": bool(admin_missing),
        },
    )


SCENARIO = Scenario(
    name="access.sql-injection",
    category="access",
    attacks="classic, UNION, stacked, comment and time-based SQL payloads in every query "
    "parameter, form field, API field, URL path segment and the login username",
    held_means="no 5xx, no database error text, no extra rows, no sleep-sized delay, no login",
    bounds=Bounds(requests=400, seconds=120),
    quick_bounds=Bounds(requests=220, seconds=40),
    run=run,
    expect_detection=True,
)
