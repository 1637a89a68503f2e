"""Pure helpers of the upload, load and benign scenarios: hostile files (polyglots, bombs),
multipart bodies as a browser sends them, links found in pages, and latency percentiles.

Nothing here talks to a server; each function is unit-tested in tests/attacklab/scenarios.
"""

from __future__ import annotations

import gzip
import io
import math
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# -- files ----------------------------------------------------------------------------------------

PDF_MAGIC = b"%PDF-"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
SCRIPT = b"<script>document.title='carevault-lab-xss'</script>"


def minimal_pdf(extra: bytes = b"") -> bytes:
    """A small valid-looking one-page PDF, ``extra`` inserted as a comment-free object."""
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
        + extra
        + b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def pdf_html_polyglot() -> bytes:
    """A PDF that is also a web page: a browser sniffing it as HTML runs the script."""
    return minimal_pdf(b"<html><body>" + SCRIPT + b"</body></html>\n")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_with_script() -> bytes:
    """A valid 1x1 PNG carrying a script in a text chunk (and after the end chunk)."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    pixels = _png_chunk(b"IDAT", zlib.compress(b"\x00\x00"))
    text = _png_chunk(b"tEXt", b"Comment\x00" + SCRIPT)
    return PNG_MAGIC + header + text + pixels + _png_chunk(b"IEND", b"") + SCRIPT


def executable_stub() -> bytes:
    """The start of a Windows program (MZ header): no clinical upload looks like this."""
    return b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48


def zip_bomb(expanded: int = 256 << 20) -> bytes:
    """A zip whose one member inflates to ``expanded`` zero bytes (a few hundred kB packed)."""
    out = io.BytesIO()
    block = b"\x00" * (1 << 20)
    with (
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("report.pdf", "w", force_zip64=True) as member,
    ):
        left = expanded
        while left > 0:
            member.write(block[: min(left, len(block))])
            left -= len(block)
    return out.getvalue()


def gzip_bomb(expanded: int = 256 << 20) -> bytes:
    """A gzip stream of ``expanded`` zero bytes (about 1/1000 of that packed)."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    block = b"\x00" * (1 << 20)
    parts = []
    left = expanded
    while left > 0:
        parts.append(squeeze.compress(block[: min(left, len(block))]))
        left -= len(block)
    parts.append(squeeze.flush())
    return b"".join(parts)


def gunzip_size(data: bytes, limit: int) -> int:
    """How many bytes ``data`` inflates to, counting at most ``limit`` (for the tests)."""
    total = 0
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        while total < limit:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
    return total


def pdf_flate_bomb(expanded: int = 64 << 20) -> bytes:
    """A PDF whose one stream (FlateDecode) inflates to ``expanded`` bytes: harmless to a server
    that stores files without parsing them, deadly to one that renders or indexes them."""
    squeeze = zlib.compressobj(9)
    block = b"\x00" * (1 << 20)
    packed = b"".join(
        squeeze.compress(block[: min(expanded - i, len(block))])
        for i in range(0, expanded, len(block))
    )
    packed += squeeze.flush()
    stream = (
        (b"4 0 obj<</Length " + str(len(packed)).encode() + b"/Filter/FlateDecode>>stream\n")
        + packed
        + b"\nendstream endobj\n"
    )
    return minimal_pdf(stream)


# -- multipart ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    field: str
    filename: str
    content_type: str
    data: bytes


def _quote(name: str) -> bytes:
    # As browsers do (HTML spec, multipart/form-data): quotes and line breaks escaped, the rest
    # (slashes, NUL, bidi controls) sent as UTF-8 bytes for the server to deal with.
    escaped = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    return escaped.encode("utf-8", "surrogatepass")


def multipart(fields: dict[str, str], files: Sequence[Part], boundary: str) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type header."""
    dash = b"--" + boundary.encode("ascii")
    out = []
    for name, value in fields.items():
        out += [
            dash,
            b'Content-Disposition: form-data; name="' + _quote(name) + b'"',
            b"",
            value.encode("utf-8"),
        ]
    for part in files:
        out += [
            dash,
            b'Content-Disposition: form-data; name="'
            + _quote(part.field)
            + b'"; filename="'
            + _quote(part.filename)
            + b'"',
            b"Content-Type: " + part.content_type.encode("latin-1"),
            b"",
            part.data,
        ]
    out += [dash + b"--", b""]
    return b"\r\n".join(out), f"multipart/form-data; boundary={boundary}"


# -- pages ----------------------------------------------------------------------------------------

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def links(html: bytes | str, prefix: str) -> list[str]:
    """The distinct ids in links ``prefix<uuid>/`` found in a page, in page order."""
    text = html.decode("utf-8", "replace") if isinstance(html, bytes) else html
    found: list[str] = []
    for match in re.finditer(re.escape(prefix) + f"({_UUID})", text):
        if match.group(1) not in found:
            found.append(match.group(1))
    return found


_SIZE = re.compile(r"([\d.,]+)\s*(bytes|KB|MB|GB)\s+each", re.IGNORECASE)
_UNITS = {"bytes": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}


def size_limit(page: bytes | str) -> int | None:
    """The per-file limit the lab's form states ("... 10.0 MB each ..."), in bytes, or None.
    Django's filesizeformat divides by 1024 and rounds to one decimal, so this is approximate
    to 0.05 units; the scenario adds a margin above it."""
    text = page.decode("utf-8", "replace") if isinstance(page, bytes) else page
    match = _SIZE.search(text.replace("\xa0", " "))
    if not match:
        return None
    return int(float(match.group(1).replace(",", "")) * _UNITS[match.group(2).lower()])


def attachment_ok(headers: dict[str, str]) -> list[str]:
    """What is wrong with how a stored upload is served back (empty: safe): it must be an
    attachment, with nosniff, and its file name must not carry a directory."""
    lower = {k.lower(): v for k, v in headers.items()}
    problems = []
    disposition = lower.get("content-disposition", "")
    if not disposition.lower().startswith("attachment"):
        problems.append("not served as an attachment")
    if lower.get("x-content-type-options", "").lower() != "nosniff":
        problems.append("no X-Content-Type-Options: nosniff")
    match = re.search(r"filename\*?=(?:utf-8'')?\"?([^\";]*)", disposition, re.IGNORECASE)
    name = match.group(1) if match else ""
    if any(bad in name for bad in ("/", "\\", "%2F", "%2f", "%5C", "%5c", "\x00", "%00")):
        problems.append("the download name carries a directory or NUL")
    if name.startswith(".") or name.lower().endswith((".html", ".htm", ".js", ".exe")):
        problems.append("the download name keeps a dangerous extension")
    return problems


# -- latency --------------------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation, or None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q is a percentage")
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50 and p95 in milliseconds (rounded), and the count."""
    p50, p95 = percentile(seconds, 50), percentile(seconds, 95)
    return {
        "n": float(len(seconds)),
        "p50_ms": None if p50 is None else round(p50 * 1000, 1),
        "p95_ms": None if p95 is None else round(p95 * 1000, 1),
    }
