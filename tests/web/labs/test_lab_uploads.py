"""Recording a result with files: real PDFs and PNGs are stored encrypted; anything else is
refused with a clear message, and a refused submission leaves nothing behind (no row, no file)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse
from lab_helpers import (
    pdf_bytes,
    pdf_upload,
    png_bytes,
    png_upload,
    result_for,
    stored_path,
    submit,
    upload_dir_listing,
)

from carevault.web.labs import actions as labs
from carevault.web.labs.models import LabFile, LabRequestStatus, LabResult

pytestmark = pytest.mark.django_db

ZIP_BYTES = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 40
TEXT_BYTES = b"Ferritin 85 ug/L - not really a PDF\n"


def assert_nothing_stored(lab_request, before: set[str]) -> None:
    assert not LabResult.objects.filter(request=lab_request).exists()
    assert not LabFile.objects.filter(result__request=lab_request).exists()
    lab_request.refresh_from_db()
    assert lab_request.status == LabRequestStatus.REQUESTED
    assert upload_dir_listing() == before


def test_uploading_a_pdf_and_a_png_records_a_signed_result(client_for, lab_request, marker):
    response = submit(client_for("labtech1"), lab_request, pdf_upload(marker), png_upload(marker))
    assert response.status_code == 302
    assert response["Location"] == reverse("labs:queue")
    lab_request.refresh_from_db()
    assert lab_request.status == LabRequestStatus.COMPLETED
    result = result_for(lab_request)
    files = {f.content_type: f for f in result.files.all()}
    assert set(files) == {"application/pdf", "image/png"}
    assert files["application/pdf"].size == len(pdf_bytes(marker))
    assert files["application/pdf"].unseal("filename") == f"report-{marker.decode()}.pdf"
    assert labs.result_status(result)[1] == "valid"


def test_the_success_message_is_shown_on_the_queue(client_for, lab_request, marker):
    client = client_for("labtech1")
    response = client.post(
        reverse("labs:request_detail", args=[lab_request.pk]),
        {"values": "Ferritin 85 ug/L", "files": [pdf_upload(marker)]},
        follow=True,
    )
    assert response.status_code == 200
    assert f"result for sample {lab_request.sample_code} is recorded and signed" in (
        response.content.decode()
    )


def test_the_files_on_disk_hold_no_plaintext(client_for, lab_request, marker):
    before = upload_dir_listing()
    submit(client_for("labtech1"), lab_request, pdf_upload(marker), png_upload(marker))
    new = upload_dir_listing() - before
    assert len(new) == 2
    for lab_file in result_for(lab_request).files.all():
        assert lab_file.storage_name in new
        on_disk = stored_path(lab_file).read_bytes()
        assert marker not in on_disk
        assert b"%PDF" not in on_disk
        assert b"PNG" not in on_disk[:64]
        assert b"report-" not in on_disk  # the file name is sealed in the database only
        assert lab_file.storage_name.endswith(".cvs")
        assert marker.decode() not in lab_file.storage_name


def test_a_result_without_files_is_fine(client_for, lab_request):
    response = submit(client_for("labtech1"), lab_request)
    assert response.status_code == 302
    assert result_for(lab_request).files.count() == 0


@pytest.mark.parametrize(
    ("content", "what"), [(ZIP_BYTES, "a ZIP archive"), (TEXT_BYTES, "plain text")]
)
def test_a_pdf_named_file_that_is_not_a_pdf_is_refused(client_for, lab_request, content, what):
    before = upload_dir_listing()
    upload = SimpleUploadedFile("results.pdf", content, "application/pdf")
    response = submit(client_for("labtech1"), lab_request, upload)
    assert response.status_code == 400, what
    html = response.content.decode()
    assert "results.pdf is not a PDF, PNG or JPEG file (checked by its content)" in html
    assert 'class="form-control is-invalid"' in html  # the file input is marked, not just the text
    assert_nothing_stored(lab_request, before)


def test_one_bad_file_refuses_the_whole_submission(client_for, lab_request, marker):
    before = upload_dir_listing()
    bad = SimpleUploadedFile("archive.pdf", ZIP_BYTES, "application/pdf")
    response = submit(client_for("labtech1"), lab_request, pdf_upload(marker), bad)
    assert response.status_code == 400
    assert_nothing_stored(lab_request, before)


def test_a_declared_type_that_does_not_match_the_content_is_refused(
    client_for, lab_request, marker
):
    before = upload_dir_listing()
    disguised = SimpleUploadedFile("scan.pdf", png_bytes(marker), "application/pdf")
    response = submit(client_for("labtech1"), lab_request, disguised)
    assert response.status_code == 400
    assert "scan.pdf claims to be application/pdf but its content is image/png" in (
        response.content.decode()
    )
    assert_nothing_stored(lab_request, before)


def test_a_declared_type_in_other_letter_case_is_no_mismatch(client_for, lab_request, marker):
    upload = SimpleUploadedFile("report.pdf", pdf_bytes(marker), "Application/PDF")
    assert submit(client_for("labtech1"), lab_request, upload).status_code == 302


def test_a_file_over_the_size_limit_is_refused(client_for, lab_request, marker):
    before = upload_dir_listing()
    with override_settings(LAB_UPLOAD_MAX_BYTES=100):
        response = submit(client_for("labtech1"), lab_request, pdf_upload(marker, name="big.pdf"))
    assert response.status_code == 400
    assert "big.pdf is larger than 100\xa0bytes" in response.content.decode()
    assert_nothing_stored(lab_request, before)


def test_the_form_states_the_limits_that_are_enforced(client_for, lab_request):
    with override_settings(LAB_UPLOAD_MAX_BYTES=2048):
        response = client_for("labtech1").get(reverse("labs:request_detail", args=[lab_request.pk]))
    assert f"Up to {labs.MAX_FILES} PDF, PNG or JPEG files" in response.content.decode()
    assert "2.0\xa0KB each" in response.content.decode()


def test_a_file_exactly_at_the_size_limit_is_accepted(client_for, lab_request, marker):
    size = len(pdf_bytes(marker))
    with override_settings(LAB_UPLOAD_MAX_BYTES=size):
        response = submit(client_for("labtech1"), lab_request, pdf_upload(marker))
    assert response.status_code == 302


def test_an_upload_too_large_for_the_memory_handler_is_refused_not_silently_dropped(
    client_for, lab_request, marker
):
    # Above FILE_UPLOAD_MAX_MEMORY_SIZE Django's memory handler discards every file without an
    # error; the result must not be recorded as if no file had been attached.
    before = upload_dir_listing()
    with override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=200):
        response = submit(client_for("labtech1"), lab_request, pdf_upload(marker, padding=500))
    assert response.status_code == 400
    assert "too large to upload together" in response.content.decode()
    assert_nothing_stored(lab_request, before)


def test_an_empty_file_is_refused(client_for, lab_request):
    before = upload_dir_listing()
    response = submit(
        client_for("labtech1"), lab_request, SimpleUploadedFile("empty.pdf", b"", "application/pdf")
    )
    assert response.status_code == 400
    assert "empty.pdf is empty" in response.content.decode()
    assert_nothing_stored(lab_request, before)


def test_more_files_than_allowed_are_refused(client_for, lab_request, marker):
    before = upload_dir_listing()
    uploads = [pdf_upload(marker, name=f"r{i}.pdf") for i in range(labs.MAX_FILES + 1)]
    response = submit(client_for("labtech1"), lab_request, *uploads)
    assert response.status_code == 400
    assert f"at most {labs.MAX_FILES} files per result" in response.content.decode()
    assert_nothing_stored(lab_request, before)


def test_values_are_required(client_for, lab_request, marker):
    before = upload_dir_listing()
    response = submit(client_for("labtech1"), lab_request, pdf_upload(marker), values="  ")
    assert response.status_code == 400
    assert "is-invalid" in response.content.decode()
    assert_nothing_stored(lab_request, before)


def test_a_failure_after_the_files_were_written_removes_them(
    client_for, lab_request, marker, monkeypatch
):
    before = upload_dir_listing()

    def broken_audit(*args, **kwargs):
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(labs, "record", broken_audit)  # fails after the files are encrypted
    with pytest.raises(RuntimeError):
        submit(client_for("labtech1"), lab_request, pdf_upload(marker), png_upload(marker))
    assert_nothing_stored(lab_request, before)


def test_submitting_twice_is_a_conflict(client_for, lab_request, marker):
    client = client_for("labtech1")
    assert submit(client, lab_request, pdf_upload(marker)).status_code == 302
    before = upload_dir_listing()
    response = submit(client, lab_request, png_upload(marker), values="Ferritin 12 ug/L")
    assert response.status_code == 409
    html = response.content.decode()
    assert "this test already has a result" in html
    assert "Ferritin 85 ug/L" in html  # the page shows the result that stands
    assert LabResult.objects.filter(request=lab_request).count() == 1
    assert result_for(lab_request).unseal("values") == "Ferritin 85 ug/L"
    assert upload_dir_listing() == before


def test_a_completed_request_shows_the_signed_result_instead_of_the_form(
    client_for, lab_request, marker
):
    client = client_for("labtech1")
    submit(client, lab_request, pdf_upload(marker))
    html = client.get(reverse("labs:request_detail", args=[lab_request.pk])).content.decode()
    assert "Signature valid" in html
    assert "Ferritin 85 ug/L" in html
    assert 'type="file"' not in html
    lab_file = result_for(lab_request).files.get()
    assert reverse("labs:file", args=[lab_file.pk]) in html


def test_a_refused_file_is_audited_with_its_types_and_size_but_not_its_name(
    client_for, lab_request, marker
):
    from carevault.web.audit.models import AuditEntry
    from carevault.web.securitycore.models import SecurityEvent
    from carevault.web.securitycore.observed import observe_entry

    disguised = SimpleUploadedFile(
        f"scan-{marker.decode()}.pdf", png_bytes(marker), "application/pdf"
    )
    assert submit(client_for("labtech1"), lab_request, disguised).status_code == 400
    entry = AuditEntry.objects.filter(action="lab.upload_rejected").get()
    assert (entry.actor, entry.outcome, entry.patient_id) == (
        "labtech1",
        "failed",
        str(lab_request.patient_id),
    )
    assert entry.details == {
        "reason": "type_mismatch",
        "declared_type": "application/pdf",
        "sniffed_type": "image/png",
        "bytes": len(png_bytes(marker)),
    }
    assert marker.decode() not in str(entry.details)
    # The threat detection sees a failed upload whose claim and content disagree.
    event = SecurityEvent.objects.filter(kind="upload").latest("pk")
    assert (event.actor, event.outcome) == ("labtech1", "failed")
    seen = observe_entry(entry, None).event
    assert (seen.upload_bytes, seen.declared_type, seen.sniffed_type) == (
        len(png_bytes(marker)),
        "application/pdf",
        "image/png",
    )


def test_an_accepted_upload_tells_the_threat_detection_its_size_and_type(
    client_for, lab_request, marker
):
    from carevault.web.audit.models import AuditEntry

    submit(client_for("labtech1"), lab_request, pdf_upload(marker))
    entry = AuditEntry.objects.filter(action="lab.result").latest("seq")
    assert entry.details["bytes"] == len(pdf_bytes(marker))
    assert entry.details["types"] == ["application/pdf"]
