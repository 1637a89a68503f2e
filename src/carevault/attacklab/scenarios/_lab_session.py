"""Shared steps of the upload scenarios over HTTP: a doctor orders tests (the honest setup), the
lab technician's account posts files to a lab request, the answers are classified.

Only HTTP: the pages and the JSON API a browser or a script of the lab would use.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from carevault.attacklab.target import AttackClient
from carevault.client import Response

from ._payloads import Part, multipart

LAB_QUEUE = "/labs/"


@dataclass(frozen=True)
class Answer:
    """How the server answered one upload."""

    status: int
    verdict: str  # "accepted", "refused" (4xx), "cut" (session ended / step-up), "error" (5xx)
    seconds: float
    body: bytes


def classify(response: Response) -> str:
    location = response.headers.get("Location", "")
    if response.status >= 500:
        return "error"
    if response.status in (301, 302, 303):
        if "/accounts/" in location:
            return "cut"  # to the login or second-factor page: the session was answered
        return "accepted"  # back to the queue: the result was recorded
    if response.status in (401, 403):
        return "cut"
    if 400 <= response.status < 500:
        return "refused"
    return "accepted"


def order_tests(doctor: AttackClient, count: int, marker: str) -> None:
    """The doctor orders ``count`` tests for their first patient (as on any morning)."""
    patients = doctor.get_json("/api/v1/patients").get("results", [])
    if not patients:
        raise RuntimeError("the doctor has no patient to order a test for")
    patient = patients[0]["id"]
    for i in range(count):
        answer = doctor.post_form(
            f"/clinic/patients/{patient}/lab-requests/",
            {"test": f"Lab check {marker}-{i}", "notes": "routine"},
        )
        if answer.status >= 400:
            raise RuntimeError(f"ordering a test: HTTP {answer.status}")


def pending_requests(lab: AttackClient, marker: str) -> list[str]:
    """Ids of the pending lab requests whose test carries ``marker``, oldest first."""
    found: list[str] = []
    for number in range(1, 11):
        page = lab.get_json(f"/api/v1/lab/queue?page={number}")
        found += [r["id"] for r in page.get("results", []) if marker in str(r.get("test", ""))]
        if number >= int(page.get("pages") or 1):
            break
    return found


def upload(
    lab: AttackClient, request_id: str, files: list[Part], values: str = "Result within range"
) -> Answer:
    """Post a result with ``files`` to the lab request's page, as the browser's form does."""
    if lab.csrf_token() is None:
        lab.get("/accounts/login/")
    body, content_type = multipart(
        {"csrfmiddlewaretoken": lab.csrf_token() or "", "values": values, "comment": ""},
        files,
        "----carevaultlab" + secrets.token_hex(8),
    )
    started = time.monotonic()
    response = lab.request(
        "POST",
        f"/labs/requests/{request_id}/",
        body=body,
        headers={
            "Content-Type": content_type,
            "Origin": lab.base_url,
            "Referer": f"{lab.base_url}/labs/requests/{request_id}/",
        },
    )
    return Answer(
        response.status, classify(response), time.monotonic() - started, response.body[:4000]
    )


def healthy(client: AttackClient) -> bool:
    try:
        return client.get("/healthz").status == 200
    except OSError:
        return False


def names_outside(data_dir: Path, marker: str) -> list[str]:
    """Paths an attacker who holds the data directory (and the machine's usual places) would
    find carrying ``marker`` in their name: an upload written where its name pointed. Files in
    the upload directory must have the server's random names, never the sender's."""
    hits: list[str] = []
    for path in data_dir.rglob("*"):
        if marker in path.name:
            hits.append(str(path))
    for place in {data_dir.parent, data_dir.parent.parent, Path("/etc"), Path("/tmp")}:  # noqa: S108
        try:
            hits += [str(p) for p in place.iterdir() if marker in p.name]
        except OSError:
            continue
    return sorted(set(hits))
