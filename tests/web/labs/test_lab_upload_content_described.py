"""A refused upload tells the audit (and so the threat detection) what its content is: a web
page, a program, a script or an archive. Found by the attack lab (upload.lab-files): every refused
file used to reach the detectors as "not recognised", so the AI layer's rule for dangerous upload
content could never fire on a real upload."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from lab_helpers import submit

from carevault.security.rules import DANGEROUS_CONTENT, NO_FEATURES, RULES
from carevault.web.labs import storage

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("head", "described"),
    [
        (b"%PDF-1.4\n", "application/pdf"),
        (b"MZ\x90\x00", "application/x-dosexec"),
        (b"\x7fELF\x02\x01", "application/x-executable"),
        (b"#!/bin/sh\n", "text/x-shellscript"),
        (b"\xef\xbb\xbf\n  <!DOCTYPE html><html>", "text/html"),
        (b"<script>alert(1)</script>", "text/html"),
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (b"\x1f\x8b\x08\x00", "application/gzip"),
        (b"Ferritin 85 ug/L", ""),
    ],
)
def test_the_first_bytes_of_a_file_say_what_it_is(head: bytes, described: str) -> None:
    assert storage.describe(head) == described


def test_describing_never_makes_a_refused_kind_acceptable() -> None:
    assert storage.sniff(b"<html><body>") is None
    assert storage.sniff(b"MZ\x90\x00") is None


@pytest.mark.parametrize(
    ("data", "sniffed"),
    [
        (b"<html><script>alert(1)</script></html>", "text/html"),
        (b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 56, "application/x-dosexec"),
    ],
)
def test_a_refused_dangerous_file_is_audited_as_what_it_is_and_matches_the_rule(
    client_for, lab_request, marker, data: bytes, sniffed: str
) -> None:
    from carevault.web.audit.models import AuditEntry
    from carevault.web.securitycore.observed import observe_entry

    disguised = SimpleUploadedFile(f"report-{marker.decode()}.pdf", data, "application/pdf")
    assert submit(client_for("labtech1"), lab_request, disguised).status_code == 400
    entry = AuditEntry.objects.filter(action="lab.upload_rejected").get()
    assert entry.details["reason"] == "unrecognised"
    assert entry.details["sniffed_type"] == sniffed
    event = observe_entry(entry, None).event
    assert event.sniffed_type in DANGEROUS_CONTENT
    rule = next(r for r in RULES if r.name == "dangerous_upload_content")
    assert rule.matches(event, NO_FEATURES)


def test_a_refused_plain_text_file_is_audited_as_not_recognised(
    client_for, lab_request, marker
) -> None:
    from carevault.web.audit.models import AuditEntry

    text = SimpleUploadedFile("notes.pdf", b"Ferritin 85 ug/L\n" + marker, "application/pdf")
    assert submit(client_for("labtech1"), lab_request, text).status_code == 400
    entry = AuditEntry.objects.filter(action="lab.upload_rejected").get()
    assert entry.details["sniffed_type"] == ""
