"""PHI at the byte level in a stolen copy of the data directory.

The honest doctor first writes notes holding unique canary strings (made from the scenario's
seed) and reads the demo patients' names, e-mail addresses and MRNs as the server shows them.
Then the attacker copies the data directory (the SQLite database with its WAL, uploads, keys,
models, logs) and scans every file byte by byte for each of those values: as they are,
case-folded, in UTF-16, base64 / base64url (every alignment) and hex, and inside compressed
data found anywhere by its magic bytes (gzip, zlib, bzip2, xz/lzma, zip members; decompressed
with a size limit, one level deep inside each other), and every text or blob cell of the
database read through SQLite (values split across overflow pages). Held: no hit at all;
leaked counts the hits (file, value, encoding).
"""

# ruff: noqa: S608 - table and column names come from the stolen copy's own schema

from __future__ import annotations

import base64
import bz2
import lzma
import sqlite3
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario

from ._rest import doctor_session, patient_ids

LIMIT = 16 * 1024 * 1024  # at most this much out of any one compressed stream
MAX_STREAMS = 2_000  # compressed streams tried per blob (magic bytes occur by chance too)
MIN_VALUE = 6  # shorter values (dates, codes) would match by chance


@dataclass(frozen=True)
class Hit:
    where: str  # file (and stream / cell) where it was found
    label: str  # which planted or known value (never the value itself)
    encoding: str


def _b64_forms(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Base64 of ``data`` at each of the three alignments it can have inside a longer text,
    with the characters that depend on the neighbours cut off."""
    for shift in range(3):
        encoded = base64.b64encode(b"\x00" * shift + data)
        start = 4 if shift else 0  # the first group holds a neighbour's bytes
        end = len(encoded) - (4 if (len(data) + shift) % 3 else 0)  # so does a partial last
        core = encoded[start:end] if end > start else b""
        if len(core) >= 8:
            yield f"base64/{shift}", core
            url = core.replace(b"+", b"-").replace(b"/", b"_")
            if url != core:
                yield f"base64url/{shift}", url


def needles(value: str) -> list[tuple[str, bytes]]:
    """Every byte form of ``value`` the scanner looks for."""
    raw = value.encode()
    forms: list[tuple[str, bytes]] = [
        ("raw", raw),
        ("utf-16-le", value.encode("utf-16-le")),
        ("utf-16-be", value.encode("utf-16-be")),
        ("hex", raw.hex().encode()),
        ("HEX", raw.hex().upper().encode()),
    ]
    forms += list(_b64_forms(raw))
    seen: set[bytes] = set()
    unique = []
    for name, form in forms:
        if form not in seen:
            seen.add(form)
            unique.append((name, form))
    return unique


def _decompressors(blob: bytes) -> Iterator[tuple[str, bytes]]:
    """(what, decompressed) for every compressed stream that starts anywhere in ``blob``."""
    candidates: list[tuple[int, str]] = []
    for magic, kind in (
        (b"\x1f\x8b\x08", "gzip"),
        (b"BZh", "bz2"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"PK\x03\x04", "zip"),
        (b"\x78\x01", "zlib"),
        (b"\x78\x5e", "zlib"),
        (b"\x78\x9c", "zlib"),
        (b"\x78\xda", "zlib"),
    ):
        at = blob.find(magic)
        while at != -1 and len(candidates) < MAX_STREAMS:
            candidates.append((at, kind))
            at = blob.find(magic, at + 1)
    for tried, (at, kind) in enumerate(sorted(candidates)):
        if tried >= MAX_STREAMS:
            return
        out = _decompress(blob, at, kind)
        if out:
            yield f"{kind}@{at}", out


def _decompress(blob: bytes, at: int, kind: str) -> bytes:
    data = blob[at:]
    try:
        if kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, LIMIT)
        if kind == "zlib":
            return zlib.decompressobj().decompress(data, LIMIT)
        if kind == "bz2":
            return bz2.BZ2Decompressor().decompress(data, LIMIT)
        if kind == "xz":
            return lzma.LZMADecompressor().decompress(data, LIMIT)
        if kind == "zip":
            return _zip_member(data)
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError):
        return b""
    return b""


def _zip_member(data: bytes) -> bytes:
    """One zip member from its local header (stored or deflated; the central directory is not
    needed, so a member cut out of a larger file still opens)."""
    if len(data) < 30:
        return b""
    method, _, _, _, size, _, name_len, extra_len = struct.unpack("<HHHIIIHH", data[8:30])
    start = 30 + name_len + extra_len
    if method == 0:
        return data[start : start + min(size, LIMIT)] if size else data[start : start + LIMIT]
    if method == 8:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[start:], LIMIT)
    return b""


def scan_bytes(blob: bytes, values: dict[str, str], where: str, *, depth: int = 2) -> list[Hit]:
    """Every form of every value (``label -> value``) in ``blob`` and, ``depth`` levels down,
    in the compressed streams inside it."""
    hits: list[Hit] = []
    folded = blob.lower()
    for label, value in values.items():
        for encoding, form in needles(value):
            if form in blob:
                hits.append(Hit(where, label, encoding))
            elif encoding == "raw" and value.casefold().encode() in folded:
                hits.append(Hit(where, label, "case-folded"))
    if depth > 0:
        for what, inner in _decompressors(blob):
            hits += scan_bytes(inner, values, f"{where}:{what}", depth=depth - 1)
    return hits


def scan_sqlite(path: Path, values: dict[str, str]) -> list[Hit]:
    """Every text and blob cell of every table, read through SQLite (values that span overflow
    pages are whole here)."""
    hits: list[Hit] = []
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return hits
    try:
        tables = [
            r[0] for r in connection.execute("select name from sqlite_master where type='table'")
        ]
        for table in tables:
            for row in connection.execute(f'select * from "{table}"'):
                for cell in row:
                    if isinstance(cell, str):
                        cell = cell.encode("utf-8", "surrogatepass")
                    if isinstance(cell, bytes) and len(cell) >= MIN_VALUE:
                        hits += scan_bytes(cell, values, f"{path.name}[{table}]", depth=1)
    except sqlite3.Error:
        pass
    finally:
        connection.close()
    return hits


def scan_tree(root: Path, values: dict[str, str]) -> tuple[list[Hit], int, int]:
    """(hits, files, bytes) over every file under ``root``."""
    hits: list[Hit] = []
    files = size = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        blob = path.read_bytes()
        files += 1
        size += len(blob)
        hits += scan_bytes(blob, values, str(path.relative_to(root)))
    for db in sorted(root.glob("*.sqlite3")):
        # Cells read through SQLite: counted only where the byte scan did not already see them.
        seen = {(h.label, h.encoding) for h in hits if h.where.startswith(db.name)}
        hits += [h for h in scan_sqlite(db, values) if (h.label, h.encoding) not in seen]
    return _unique(hits), files, size


def _unique(hits: Iterable[Hit]) -> list[Hit]:
    return sorted(set(hits), key=lambda h: (h.where, h.label, h.encoding))


# -- the scenario -------------------------------------------------------------------------------


def _plant_and_learn(ctx: Context) -> dict[str, str]:
    doctor = doctor_session(ctx)
    values: dict[str, str] = {}
    ids = patient_ids(doctor)
    for number, pid in enumerate(ids):
        record = doctor.get_json(f"/api/v1/patients/{pid}")
        demo = record.get("demographics", {})
        for field in ("name", "email", "mrn", "address"):
            value = demo.get(field)
            if isinstance(value, str) and len(value) >= MIN_VALUE:
                values[f"patient {number + 1} {field}"] = value
        for d_number, diagnosis in enumerate(record.get("diagnoses", [])):
            text = diagnosis.get("description")
            if isinstance(text, str) and len(text) >= 12:
                values[f"patient {number + 1} diagnosis {d_number + 1}"] = text
    for number, pid in enumerate(ids[:2]):
        canary = f"CANARY-{ctx.rng.getrandbits(64):016x}-{ctx.rng.getrandbits(32):08x}"
        body = f"Follow-up: {canary} reports dizziness; Ärztin informiert."
        answer = doctor.post_json(f"/api/v1/patients/{pid}/notes", {"body": body})
        if answer.status != 201:
            raise RuntimeError(f"could not plant a canary note: HTTP {answer.status}")
        values[f"canary note {number + 1}"] = canary
    doctor.logout()
    return values


def run(ctx: Context) -> Outcome:
    files = ctx.need_files()
    values = _plant_and_learn(ctx)
    with tempfile.TemporaryDirectory(prefix="cv-phi-scan-") as tmp:
        stolen = files.copy(Path(tmp) / "stolen")
        hits, scanned, size = scan_tree(stolen.data_dir, values)
    labels = sorted({h.label.rsplit(" ", 1)[0] for h in hits})
    findings = [
        f"scanned {scanned} files ({size // 1024} KiB) for {len(values)} values "
        f"({sum(len(needles(v)) for v in values.values())} byte forms each case-folded, and "
        "inside compressed streams and SQLite cells)"
    ]
    for hit in hits[:10]:
        findings.append(f"{hit.label} found in {hit.where} ({hit.encoding})")
    if len(hits) > 10:
        findings.append(f"... and {len(hits) - 10} more hits ({', '.join(labels)})")
    return Outcome(
        held=not hits and bool(values),
        defences=["encryption at rest"] if not hits else [],
        leaked=len(hits),
        findings=findings,
        metrics={"values": len(values), "files": scanned, "bytes": size, "hits": len(hits)},
    )


SCENARIO = Scenario(
    name="rest.phi-scan",
    category="data at rest",
    attacks="a stolen copy of the data directory, scanned byte by byte for known PHI and planted "
    "canaries (raw, case-folded, UTF-16, base64, hex, inside compressed streams, SQLite cells)",
    held_means="no planted canary and no patient name, e-mail or MRN is found in any form",
    bounds=Bounds(requests=60, seconds=120),
    quick_bounds=Bounds(requests=40, seconds=60),
    run=run,
    needs_files=True,
)
