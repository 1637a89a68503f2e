"""Helpers of the lab tests: small real files that carry a unique marker (so a scan of the
upload directory can prove no plaintext reached it), and a result submitted the way a browser
submits it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from carevault.web import demo
from carevault.web.audit.models import AuditEntry
from carevault.web.labs import storage
from carevault.web.labs.models import LabResult


def pdf_bytes(marker: bytes, padding: int = 0) -> bytes:
    """The demo's one-page PDF with a comment line holding ``marker`` (and optional padding)."""
    head, rest = demo.DEMO_PDF.split(b"\n", 1)
    return (
        head + b"\n%" + marker + b"\n" + (b"%" + b"x" * padding + b"\n" if padding else b"") + rest
    )


def png_bytes(marker: bytes) -> bytes:
    """A valid 1x1 PNG with ``marker`` in a text chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", b"Comment\x00" + marker)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


def pdf_upload(marker: bytes, name: str | None = None, **kwargs) -> SimpleUploadedFile:
    return SimpleUploadedFile(
        name or f"report-{marker.decode()}.pdf", pdf_bytes(marker, **kwargs), "application/pdf"
    )


def png_upload(marker: bytes, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or f"scan-{marker.decode()}.png", png_bytes(marker), "image/png")


def submit(client, lab_request, *files, values="Ferritin 85 ug/L", comment="Normal range."):
    data = {"values": values, "comment": comment}
    if files:
        data["files"] = list(files)
    return client.post(reverse("labs:request_detail", args=[lab_request.pk]), data)


def upload_dir_listing() -> set[str]:
    return {p.name for p in storage.upload_dir().iterdir()}


def stored_path(lab_file) -> Path:
    return storage.upload_dir() / lab_file.storage_name


def result_for(lab_request) -> LabResult:
    return LabResult.objects.select_related("request", "technician", "signing_key").get(
        request=lab_request
    )


def latest_audit(action: str) -> AuditEntry | None:
    return AuditEntry.objects.filter(action=action).order_by("-seq").first()


def patient_identity_strings() -> list[str]:
    """Everything that identifies a demo patient (the lab must never see any of it)."""
    strings: list[str] = []
    for spec in demo.PATIENTS:
        strings += [spec.username, spec.name, spec.mrn, spec.email, spec.phone, spec.address]
        strings.append(spec.birth_date.isoformat())
    return strings
