"""Shared pieces of the access scenarios (access_*.py): signing in as a demo user, learning
the victims' ids and PHI the way an attacker would (as the owner, over HTTP), telling a
refusal from an answer, and looking for the victim's values in what came back.

Pure helpers (no HTTP) are unit-tested in tests/attacklab/scenarios/test_access_common.py.
The leading underscore keeps the registry from looking for a scenario here.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from carevault.attacklab.bounds import Skip
from carevault.attacklab.context import Context
from carevault.attacklab.target import AttackClient
from carevault.client import LoginFailed, Response

LOGIN_PATH = "/accounts/login/"

# Values shorter than this are too likely to occur by chance in a page (a code like "E11.9"
# still counts: ICD codes are 5+ characters with their dot).
MIN_PHI_LENGTH = 5

# Text a database error leaves in a page when it escapes (SQLite, PostgreSQL, Django, Python).
SQL_ERROR_MARKERS = (
    "operationalerror",
    "programmingerror",
    "databaseerror",
    "integrityerror",
    "syntax error",
    "unrecognized token",
    "sqlite3.",
    "sqlite_error",
    "psycopg",
    "sqlstate",
    "unterminated quoted string",
    "no such column",
    "no such table",
    "traceback (most recent call last)",
    "django.db.",
)


def login(ctx: Context, user: str, n: int) -> AttackClient:
    """Client ``n`` signed in as the demo user ``user`` (Skip if the lab will not let it)."""
    client = ctx.client(n)
    try:
        client.login(user, ctx.password(user))
    except (LoginFailed, RuntimeError) as exc:
        raise Skip(f"cannot sign in as {user}: {exc}") from None
    return client


def is_refusal(response: Response) -> bool:
    """403/404/401/405/429, or a redirect to the login page: the server gave nothing."""
    if response.status in (401, 403, 404, 405, 429):
        return True
    if response.status in (301, 302, 303, 307, 308):
        return LOGIN_PATH in response.headers.get("Location", "")
    return False


def phi_of_record(record: Mapping[str, Any]) -> list[str]:
    """The PHI strings of a ``/api/v1/patients/<id>`` answer: demographics, diagnoses,
    prescriptions, lab results. Short values are left out (see MIN_PHI_LENGTH)."""
    values: list[str] = []
    demographics = record.get("demographics") or {}
    if isinstance(demographics, Mapping):
        values += [v for v in demographics.values() if isinstance(v, str)]
    for key, fields in (
        ("diagnoses", ("code", "description")),
        ("prescriptions", ("drug", "dose", "instructions")),
        ("lab_results", ("test", "values", "comment")),
    ):
        for item in record.get(key) or []:
            if isinstance(item, Mapping):
                values += [item[f] for f in fields if isinstance(item.get(f), str)]
    seen: dict[str, None] = {}
    for value in values:
        value = value.strip()
        if len(value) >= MIN_PHI_LENGTH:
            seen.setdefault(value, None)
    return list(seen)


def phi_in_body(body: bytes, values: Iterable[str]) -> list[str]:
    """The values found in ``body``, as they are, HTML-escaped or JSON-escaped."""
    text = body.decode("utf-8", "replace")
    found = []
    for value in values:
        forms = {value, html.escape(value), html.escape(value, quote=False)}
        forms.add(value.replace("/", "\\/"))
        if any(f in text for f in forms):
            found.append(value)
    return found


def sql_errors_in(body: bytes) -> list[str]:
    """The database-error markers in a response body (none in a held answer)."""
    text = body.decode("utf-8", "replace").lower()
    return [m for m in SQL_ERROR_MARKERS if m in text]


_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def ids_in(body: bytes, prefix: str, suffix: str = "/") -> list[str]:
    """UUIDs in links like ``prefix<uuid>suffix`` (in order, once each)."""
    pattern = re.escape(prefix) + f"({_UUID})" + re.escape(suffix)
    found: dict[str, None] = {}
    for match in re.finditer(pattern, body.decode("utf-8", "replace")):
        found.setdefault(match.group(1), None)
    return list(found)


@dataclass
class Victim:
    """A patient as their owner saw them: the record id and the PHI the owner was shown."""

    name: str
    patient_id: str
    phi: list[str]
    file_ids: list[str] = field(default_factory=list)


def recon(doctor: AttackClient) -> list[Victim]:
    """The doctor's patients as the doctor sees them over the API, oldest first."""
    listing = doctor.get("/api/v1/patients")
    if listing.status != 200:
        raise Skip(f"the owner's patient list answered HTTP {listing.status}")
    victims: list[Victim] = []
    for row in listing.json().get("results", []):
        answer = doctor.get(f"/api/v1/patients/{row['id']}")
        if answer.status != 200:
            continue
        record = answer.json()
        files = [
            str(f["id"])
            for result in record.get("lab_results") or []
            for f in result.get("files") or []
        ]
        victims.append(Victim(str(row["name"]), str(row["id"]), phi_of_record(record), files))
    return victims


def marker(ctx: Context, what: str) -> str:
    """A unique, harmless string to find a write by afterwards."""
    return f"lab-{what}-{ctx.rng.getrandbits(48):012x}"


def _session_ended(response: Response) -> bool:
    if response.status == 401:
        return True
    return response.status in (302, 303) and LOGIN_PATH in response.headers.get("Location", "")


class Insider:
    """A signed-in attacker who signs in again when the server ends their session (the AI
    layer's "block session" answer), so each probe is judged by the access rules and not only by
    the session block. At most ``relogins`` new sessions; then the block answers stand.
    ``user=""`` is an anonymous visitor (never signs in)."""

    def __init__(self, ctx: Context, user: str, n: int, relogins: int = 3) -> None:
        self.ctx = ctx
        self.user = user
        self.n = n
        self.relogins = relogins if user else 0
        self.sessions_ended = 0
        self.client = login(ctx, user, n) if user else ctx.client(n)

    def _again(self, response: Response) -> bool:
        if not self.user or not _session_ended(response):
            return False
        self.sessions_ended += 1
        if self.relogins <= 0 or not self.ctx.within_bounds(reserve=4):
            return False
        self.relogins -= 1
        client = self.ctx.client(self.n)
        try:
            client.login(self.user, self.ctx.password(self.user))
        except (LoginFailed, RuntimeError):
            return False
        self.client = client
        return True

    def get(self, path: str) -> Response:
        response = self.client.get(path)
        return self.client.get(path) if self._again(response) else response

    def post_form(
        self, path: str, fields: dict[str, str], *, origin: str | None = None
    ) -> Response:
        response = self.client.post_form(path, fields, origin=origin)
        if self._again(response):
            return self.client.post_form(path, fields, origin=origin)
        return response

    def post_json(self, path: str, data: Any) -> Response:
        response = self.client.post_json(path, data)
        return self.client.post_json(path, data) if self._again(response) else response
