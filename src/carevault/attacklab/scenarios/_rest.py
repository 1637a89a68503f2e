"""Shared by the data-at-rest and fault scenarios: the honest doctor's session, the stolen copy,
what the database's schema says (read generically from ``sqlite_master``, never from the
server's models) and the officer's integrity walk (``backup check`` and ``audit verify``)."""

# ruff: noqa: S608 - table and column names come from the stolen copy's own schema

from __future__ import annotations

import html
import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carevault.attacklab.context import Context
from carevault.attacklab.lab import Files
from carevault.attacklab.target import AttackClient

DOCTOR = "doctor1"
ENVELOPE_MAGIC = b"CV\x01"  # how every sealed value starts (the crypto core's envelope)


def doctor_session(ctx: Context, n: int = 0) -> AttackClient:
    """The honest doctor on a ward computer (not counted as attack traffic)."""
    client = ctx.honest_client(n)
    ctx.honest_accounts.add(DOCTOR)
    client.login(DOCTOR, ctx.password(DOCTOR))
    return client


def patient_ids(client: AttackClient) -> list[str]:
    listing = client.get_json("/api/v1/patients")
    return [str(p["id"]) for p in listing.get("results", [])]


@contextmanager
def database(files: Files) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(files.database, timeout=30)
    try:
        yield connection
        connection.commit()
    finally:
        connection.close()


@dataclass(frozen=True)
class SealedColumn:
    table: str
    column: str


def sealed_columns(connection: sqlite3.Connection) -> list[SealedColumn]:
    """Every BLOB column whose values are sealed envelopes, found from the schema and a sample."""
    found = []
    tables = [
        r[0]
        for r in connection.execute(
            "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'"
        )
    ]
    for table in sorted(tables):
        for _, column, kind, *_ in connection.execute(f'pragma table_info("{table}")'):
            if str(kind).upper() != "BLOB":
                continue
            sample = connection.execute(
                f'select "{column}" from "{table}" where length("{column}") > 8 limit 1'
            ).fetchone()
            if sample and bytes(sample[0]).startswith(ENVELOPE_MAGIC):
                found.append(SealedColumn(table, column))
    return found


def signature_columns(connection: sqlite3.Connection) -> list[SealedColumn]:
    """Text columns named ``signature`` (signed clinical records)."""
    found = []
    for (table,) in connection.execute("select name from sqlite_master where type = 'table'"):
        for _, column, *_ in connection.execute(f'pragma table_info("{table}")'):
            if column == "signature":
                found.append(SealedColumn(table, column))
    return found


def integrity_walk(files: Files) -> dict[str, Any]:
    """``backup check`` and ``audit verify`` on ``files``: what each said."""
    check = files.cli("backup", "check", "--json", check=False, timeout=180)
    audit = files.cli("audit", "verify", "--json", check=False, timeout=180)
    return {
        "check_ok": check.returncode == 0,
        "check": _json_or_text(check.stdout, check.stderr),
        "audit_ok": audit.returncode == 0,
        "audit": _json_or_text(audit.stdout, audit.stderr),
    }


def _json_or_text(out: str, err: str) -> Any:
    try:
        return json.loads(out)
    except ValueError:
        return (err or out).strip()[-300:]


def fresh_copy(files: Files, root: Path, name: str) -> Files:
    return files.copy(root / name)


class NoteWriter:
    """An honest doctor writing notes in a loop on a thread of its own: what the server
    acknowledged (201) is what must never be lost. Every note carries a unique marker."""

    def __init__(self, client: AttackClient, patient: str, tag: str, pause: float = 0.02) -> None:
        import threading

        self.client = client
        self.patient = patient
        self.tag = tag
        self.pause = pause
        self.acknowledged: list[str] = []
        self.refused = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="honest-notes", daemon=True)
        self._n = 0

    def write_one(self) -> bool:
        self._n += 1
        marker = f"{self.tag}-{self._n:05d}"
        try:
            answer = self.client.post_json(
                f"/api/v1/patients/{self.patient}/notes", {"body": f"Ward round {marker}: stable."}
            )
        except Exception:  # the server died under the request: not acknowledged
            self.errors += 1
            return False
        if answer.status == 201:
            self.acknowledged.append(marker)
            return True
        self.refused += 1
        return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.write_one()
            self._stop.wait(self.pause)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


# The record page shows a slice of each section, newest first; its "show more" control for the
# notes is a plain link to the next slice (the same URL htmx fetches).
_MORE_NOTES = re.compile(r'href="([^"]+)"[^>]*data-more="notes"')
MAX_SLICES = 500  # a bound on the walk: 10,000 notes at 20 a slice


def next_notes_link(body: str) -> str | None:
    """The "show more" link of the notes section in a page or slice, or None at the end."""
    match = _MORE_NOTES.search(body)
    return html.unescape(match.group(1)) if match else None


def missing_notes(client: AttackClient, patient: str, markers: list[str]) -> list[str]:
    """The markers whose notes the doctor's view of the patient does not show decrypted: the
    record page, then each older slice of its notes ("show more") until every marker has been
    seen or the notes run out."""
    wanted = set(markers)
    path: str | None = f"/clinic/patients/{patient}/"
    for _ in range(MAX_SLICES):
        if path is None or not wanted:
            break
        page = client.get(path)
        if page.status != 200:
            raise RuntimeError(f"the patient's page answered HTTP {page.status}")
        text = page.body.decode("utf-8", "replace")
        wanted = {m for m in wanted if m not in text}
        path = next_notes_link(text)
    return [m for m in markers if m in wanted]
