"""Tampering with sealed values and signatures in a stolen copy of the database.

With write access to the database file (the standard library's sqlite3, the schema read from
``sqlite_master``: every BLOB column holding sealed envelopes, every ``signature`` column), the
attacker swaps ciphertexts between rows of one patient, between patients and between fields of
one row, flips a bit in a ciphertext and in a signature, blanks a value, and rolls a value back
to the ciphertext it had before the officer re-encrypted it. Then the officer's integrity walk
runs on the copy: ``carevault backup check`` (decrypts every value, verifies every signature,
names each record that fails) and ``carevault audit verify``.

Held: every tampered record is named by the walk (its value does not decrypt to the swapped
value, its signature does not verify); lost counts the tampered values the walk passed. The
quick lab applies the tampers to disjoint records of one copy (the walk names each); the full
lab gives each tamper a fresh copy.
"""

# ruff: noqa: S608 - table and column names come from the stolen copy's own schema

from __future__ import annotations

import random
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.lab import Files
from carevault.attacklab.scenario import Outcome, Scenario

from ._rest import SealedColumn, database, integrity_walk, sealed_columns, signature_columns

Row = tuple[Any, Any, Any]  # (id, patient id, value)
T = TypeVar("T")

STRONGER = "HYBRID-X25519-AES-256-GCM"


@dataclass
class Tamper:
    name: str
    expected: list[str] = field(default_factory=list)  # "<model> <uuid> <column|signature>"
    note: str = ""


def record_name(table: str, row_id: str, column: str) -> str:
    """How ``backup check`` names a record: the model label (``app.model``, the table name's
    first underscore a dot), the UUID and the column without ``_enc``."""
    label = table.replace("_", ".", 1)
    try:
        key = str(uuid.UUID(str(row_id)))
    except ValueError:
        key = str(row_id)
    return f"{label} {key} {column.removesuffix('_enc')}"


def _columns(connection: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in connection.execute(f'pragma table_info("{table}")')}


def phi_columns(connection: sqlite3.Connection) -> list[SealedColumn]:
    """Sealed columns of a patient's records: tables with a ``patient_id``, and the table those
    point to (the patients themselves)."""
    sealed = sealed_columns(connection)
    patients = {
        str(fk[2])
        for table in {c.table for c in sealed}
        for fk in connection.execute(f'pragma foreign_key_list("{table}")')
        if fk[3] == "patient_id"
    }
    return [
        c
        for c in sealed
        if "id" in _columns(connection, c.table)
        and ("patient_id" in _columns(connection, c.table) or c.table in patients)
    ]


def key_columns(connection: sqlite3.Connection) -> list[SealedColumn]:
    """Sealed columns of per-user key records (a clinician's wrapped signing key)."""
    return [
        c
        for c in sealed_columns(connection)
        if {"id", "user_id"} <= _columns(connection, c.table)
        and "patient_id" not in _columns(connection, c.table)
    ]


def _has(connection: sqlite3.Connection, table: str, column: str) -> bool:
    return any(r[1] == column for r in connection.execute(f'pragma table_info("{table}")'))


def _rows(connection: sqlite3.Connection, col: SealedColumn, used: set[str]) -> list[Row]:
    patient = "patient_id" if _has(connection, col.table, "patient_id") else "id"
    rows = connection.execute(
        f'select id, {patient}, "{col.column}" from "{col.table}" '
        f'where length("{col.column}") > 0 order by id'
    ).fetchall()
    return [r for r in rows if f"{col.table}:{r[0]}" not in used]


def _set(
    connection: sqlite3.Connection, table: str, column: str, row_id: str, value: object
) -> None:
    connection.execute(f'update "{table}" set "{column}" = ? where id = ?', (value, row_id))


Planner = Callable[[sqlite3.Connection, random.Random, set[str]], Tamper | None]


def swap_rows(connection: sqlite3.Connection, rng: random.Random, used: set[str]) -> Tamper | None:
    """Two rows of one patient exchange a field's ciphertext."""
    for col in _shuffled(phi_columns(connection), rng):
        by_patient: dict[str, list[Row]] = {}
        for row in _rows(connection, col, used):
            by_patient.setdefault(str(row[1]), []).append(row)
        for rows in by_patient.values():
            if len(rows) >= 2 and rows[0][0] != rows[0][1]:
                return _swap(connection, col, col, rows[0], rows[1], used, "between rows")
    return None


def swap_patients(
    connection: sqlite3.Connection, rng: random.Random, used: set[str]
) -> Tamper | None:
    """Rows of two patients exchange a field's ciphertext."""
    for col in _shuffled(phi_columns(connection), rng):
        rows = _rows(connection, col, used)
        for a in rows:
            for b in rows:
                if str(a[1]) != str(b[1]):
                    return _swap(connection, col, col, a, b, used, "between patients")
    return None


def swap_fields(
    connection: sqlite3.Connection, rng: random.Random, used: set[str]
) -> Tamper | None:
    """Two fields of one row exchange their ciphertexts."""
    columns = phi_columns(connection)
    tables = sorted({c.table for c in columns})
    for table in _shuffled(tables, rng):
        mine = [c for c in columns if c.table == table]
        if len(mine) < 2:
            continue
        rows = _rows(connection, mine[0], used)
        if rows:
            a = rows[0]
            b = connection.execute(
                f'select id, id, "{mine[1].column}" from "{table}" where id = ?', (a[0],)
            ).fetchone()
            return _swap(connection, mine[0], mine[1], a, b, used, "between fields")
    return None


def _swap(
    connection: sqlite3.Connection,
    col_a: SealedColumn,
    col_b: SealedColumn,
    a: Row,
    b: Row,
    used: set[str],
    how: str,
) -> Tamper:
    _set(connection, col_a.table, col_a.column, a[0], b[2])
    _set(connection, col_b.table, col_b.column, b[0], a[2])
    used.update({f"{col_a.table}:{a[0]}", f"{col_b.table}:{b[0]}"})
    return Tamper(
        f"swap {how}",
        [
            record_name(col_a.table, a[0], col_a.column),
            record_name(col_b.table, b[0], col_b.column),
        ],
        f"{col_a.table}.{col_a.column} / {col_b.column}",
    )


def swap_signing_keys(
    connection: sqlite3.Connection, rng: random.Random, used: set[str]
) -> Tamper | None:
    """Two clinicians' wrapped private signing keys exchanged (to sign under another's name)."""
    for col in _shuffled(key_columns(connection), rng):
        rows = connection.execute(
            f'select id, user_id, "{col.column}" from "{col.table}" order by id'
        ).fetchall()
        rows = [r for r in rows if f"{col.table}:{r[0]}" not in used]
        for a in rows:
            for b in rows:
                if a[1] != b[1]:
                    return _swap(connection, col, col, a, b, used, "of signing keys")
    return None


def flip_ciphertext(
    connection: sqlite3.Connection, rng: random.Random, used: set[str]
) -> Tamper | None:
    for col in _shuffled(phi_columns(connection), rng):
        rows = _rows(connection, col, used)
        if rows:
            row_id, _, blob = rows[rng.randrange(len(rows))]
            data = bytearray(blob)
            at = rng.randrange(len(data) // 2, len(data))  # the body or the tag, not the header
            data[at] ^= 1 << rng.randrange(8)
            _set(connection, col.table, col.column, row_id, bytes(data))
            used.add(f"{col.table}:{row_id}")
            return Tamper("bit flip in a ciphertext", [record_name(col.table, row_id, col.column)])
    return None


def flip_signature(
    connection: sqlite3.Connection, rng: random.Random, used: set[str]
) -> Tamper | None:
    for col in _shuffled(signature_columns(connection), rng):
        rows = [
            r
            for r in connection.execute(f'select id, "{col.column}" from "{col.table}" order by id')
            if f"{col.table}:{r[0]}" not in used
        ]
        if rows:
            row_id, signature = rows[rng.randrange(len(rows))]
            head, _, tail = str(signature).rpartition(".")
            at = rng.randrange(len(tail) // 4, len(tail) - 2)
            swapped = "B" if tail[at] == "A" else "A"
            _set(
                connection,
                col.table,
                col.column,
                row_id,
                f"{head}.{tail[:at]}{swapped}{tail[at + 1 :]}",
            )
            used.add(f"{col.table}:{row_id}")
            # The key it was signed with is left alone (a swapped key would fail it anyway).
            for fk in connection.execute(f'pragma foreign_key_list("{col.table}")'):
                if str(fk[3]).endswith("key_id"):
                    key = connection.execute(
                        f'select "{fk[3]}" from "{col.table}" where id = ?', (row_id,)
                    ).fetchone()
                    used.add(f"{fk[2]}:{key[0]}")
            return Tamper("bit flip in a signature", [record_name(col.table, row_id, "signature")])
    return None


def blank_value(
    connection: sqlite3.Connection, rng: random.Random, used: set[str]
) -> Tamper | None:
    for col in _shuffled(phi_columns(connection), rng):
        rows = _rows(connection, col, used)
        if rows:
            row_id = rows[rng.randrange(len(rows))][0]
            _set(connection, col.table, col.column, row_id, b"")
            used.add(f"{col.table}:{row_id}")
            return Tamper("blanked value", [record_name(col.table, row_id, col.column)])
    return None


# The most constrained first, so that the quick lab finds disjoint records for every one.
PLANNERS: list[Planner] = [
    flip_signature,
    swap_signing_keys,
    swap_fields,
    swap_rows,
    swap_patients,
    flip_ciphertext,
    blank_value,
]


def _shuffled(items: list[T], rng: random.Random) -> list[T]:
    items = list(items)
    rng.shuffle(items)
    return items


def judge(tampers: list[Tamper], failures: list[str]) -> tuple[list[str], list[str]]:
    """(detected, missed) expected record names."""
    named = set(failures)
    expected = [name for t in tampers for name in t.expected]
    return [n for n in expected if n in named], [n for n in expected if n not in named]


def _walk(files: Files) -> tuple[list[str], dict[str, Any]]:
    walk = integrity_walk(files)
    check = walk["check"] if isinstance(walk["check"], dict) else {}
    return list(check.get("failures", [])), walk


def _rollback(files: Files, rng: random.Random, findings: list[str]) -> tuple[int, int]:
    """Re-encrypt (the officer's ``keys reencrypt --to`` a stronger suite) then put one value's
    previous ciphertext back. (detected, undetected) — the records are write-once, so the
    older ciphertext holds the same value: no value changes, only the suite goes back."""
    with database(files) as connection:
        col = next(c for c in phi_columns(connection) if c.table == "clinic_clinicalnote")
        row_id, _, old = _rows(connection, col, set())[0]
    files.cli("keys", "reencrypt", "--to", STRONGER, timeout=300)
    with database(files) as connection:
        new = connection.execute(
            f'select "{col.column}" from "{col.table}" where id = ?', (row_id,)
        ).fetchone()[0]
        _set(connection, col.table, col.column, row_id, old)
    failures, _ = _walk(files)
    name = record_name(col.table, row_id, col.column)
    if name in failures:
        findings.append("rolled-back ciphertext (from before re-encryption): named by the walk")
        return 1, 0
    findings.append(
        "rolled-back ciphertext (from before re-encryption) still opens: the same value "
        "(records are write-once), under the older suite "
        + ("(the re-encryption had changed it)" if bytes(new) != bytes(old) else "(unchanged)")
        + "; a suite downgrade, not a changed record"
    )
    return 0, 1


def run(ctx: Context) -> Outcome:
    files = ctx.need_files()
    findings: list[str] = []
    tampers: list[Tamper] = []
    detected: list[str] = []
    missed: list[str] = []
    audit_ok = True
    with tempfile.TemporaryDirectory(prefix="cv-tamper-") as tmp:
        root = Path(tmp)
        if ctx.quick:
            stolen = files.copy(root / "all")
            used: set[str] = set()
            with database(stolen) as connection:
                for planner in PLANNERS:
                    tamper = planner(connection, ctx.rng, used)
                    if tamper is not None:
                        tampers.append(tamper)
            failures, walk = _walk(stolen)
            detected, missed = judge(tampers, failures)
            audit_ok = walk["audit_ok"]
        else:
            for number, planner in enumerate(PLANNERS):
                stolen = files.copy(root / f"t{number}")
                with database(stolen) as connection:
                    tamper = planner(connection, ctx.rng, set())
                if tamper is None:
                    continue
                tampers.append(tamper)
                failures, walk = _walk(stolen)
                got, lost = judge([tamper], failures)
                detected += got
                missed += lost
                audit_ok = audit_ok and walk["audit_ok"]
        rollback_seen = rollback_open = 0
        if not ctx.quick:
            rollback_seen, rollback_open = _rollback(
                files.copy(root / "rollback"), ctx.rng, findings
            )
    summary = []
    for tamper in tampers:
        caught = sum(1 for n in tamper.expected if n in detected)
        summary.append(
            f"{tamper.name}: {caught}/{len(tamper.expected)} tampered records named by the walk"
        )
    findings[:0] = summary
    for name in missed:
        findings.append(f"NOT detected: {name.split(' ')[0]} {name.split(' ')[-1]} passed the walk")
    if ctx.quick:
        findings.append("rollback after re-encryption: in the full lab (it re-encrypts the copy)")
    findings.append(
        "audit verify on the tampered copy: "
        + (
            "intact (value tampering leaves the chain alone; the walk's alerts were appended)"
            if audit_ok
            else "reported problems"
        )
    )
    held = bool(tampers) and not missed and len(tampers) == len(PLANNERS)
    if len(tampers) < len(PLANNERS):
        findings.append(f"could not set up every tamper ({len(tampers)}/{len(PLANNERS)})")
    defences = []
    if any(t.name != "bit flip in a signature" for t in tampers) and detected:
        defences.append("AEAD check")
    if any(t.name == "bit flip in a signature" for t in tampers) and detected:
        defences.append("signature")
    return Outcome(
        held=held,
        defences=defences,
        lost=len(missed),
        findings=findings,
        metrics={
            "tampers": len(tampers),
            "tampered_records": len(detected) + len(missed),
            "detected": len(detected),
            "missed": len(missed),
            "rollback_detected": rollback_seen,
            "rollback_opens_same_value": rollback_open,
        },
    )


SCENARIO = Scenario(
    name="rest.tamper",
    category="data at rest",
    attacks="sealed values and signatures edited in a stolen copy of the database: ciphertexts "
    "swapped between rows, patients and fields, bits flipped, a value blanked, a value rolled back",
    held_means="the integrity walk (backup check) names every tampered record; none decrypts to "
    "a swapped value",
    bounds=Bounds(requests=0, seconds=240),
    quick_bounds=Bounds(requests=0, seconds=60),
    run=run,
    needs_files=True,
)
