"""What the encryption page shows (issue 6): the policy in force, the floor, how stored records
are encrypted and why (the per-record decision log), and re-encryption jobs. Request metadata
and record ids only: nothing here decrypts anything."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.paginator import Paginator
from django.db.models import Count, QuerySet

from carevault.crypto import CryptoError, Suite
from carevault.web.vault import adaptive, reencrypt
from carevault.web.vault.models import EncryptionDecision, ReencryptionJob

PAGE_SIZE = 50
JOBS_SHOWN = 10


def decisions(
    *, table: str = "", suite: str = "", record: str = "", page: str | int = 1
) -> dict[str, Any]:
    """The decision log, newest first, filtered by table, suite or record id (bad filters are
    reported, not applied)."""
    rows: QuerySet[EncryptionDecision] = EncryptionDecision.objects.all()
    problems = []
    if table:
        rows = rows.filter(table=table)
    if suite:
        try:
            rows = rows.filter(suite=Suite.parse(suite).label)
        except CryptoError:
            problems.append(f"unknown suite {suite[:40]!r}")
    if record:
        try:
            key = str(uuid.UUID(record.strip()))
        except ValueError:
            problems.append("a record id is a UUID (as shown in the table)")
        else:
            rows = rows.filter(row=key) | EncryptionDecision.objects.filter(patient_id=key)
    paged = Paginator(rows.order_by("-decided_at", "-pk"), PAGE_SIZE).get_page(page)
    return {"decisions": paged, "problems": problems}


def distribution() -> list[dict[str, Any]]:
    """How many records each suite protects, weakest first."""
    counts = {
        row["suite"]: row["n"]
        for row in EncryptionDecision.objects.values("suite").annotate(n=Count("pk"))
    }
    out = []
    for label, n in counts.items():
        try:
            level = Suite.parse(label).level
        except CryptoError:
            level = 0
        out.append({"suite": label, "count": n, "level": level})
    return sorted(out, key=lambda r: (r["level"], r["suite"]))


def tables() -> list[str]:
    return sorted(EncryptionDecision.objects.values_list("table", flat=True).distinct())


def jobs() -> dict[str, Any]:
    return {
        "open_job": reencrypt.open_job(),
        "jobs": list(ReencryptionJob.objects.order_by("-created_at", "-pk")[:JOBS_SHOWN]),
    }


def policy() -> dict[str, Any]:
    return adaptive.policy().describe()
