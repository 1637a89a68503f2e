"""Downloading lab files: decrypted and streamed to the patient, the doctors who may see the
patient and the lab; refused (404 and audited) to everyone else; never served when the stored
file was tampered with. And the result's signature notices tampering of values or files."""

from __future__ import annotations

import shutil
import uuid

import pytest
from django.urls import reverse
from lab_helpers import (
    latest_audit,
    pdf_bytes,
    pdf_upload,
    png_bytes,
    png_upload,
    result_for,
    stored_path,
    submit,
)

from carevault.crypto import DecryptionError, streaming
from carevault.web.clinic import actions as clinic
from carevault.web.labs import actions as labs
from carevault.web.labs.models import LabFile, LabResult
from carevault.web.labs.views import download_name

pytestmark = pytest.mark.django_db

EMERGENCY_REASON = "Unconscious in the emergency room; own doctor unreachable."


@pytest.fixture
def completed(client_for, lab_request, marker):
    """lab_request (patient1, doctor1) completed by labtech1 with a PDF and a PNG."""
    response = submit(client_for("labtech1"), lab_request, pdf_upload(marker), png_upload(marker))
    assert response.status_code == 302
    return result_for(lab_request)


def file_of(result: LabResult, content_type: str) -> LabFile:
    return result.files.get(content_type=content_type)


def download(client, lab_file: LabFile):
    return client.get(reverse("labs:file", args=[lab_file.pk]))


def body(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


@pytest.mark.parametrize("username", ["patient1", "doctor1", "labtech1"])
def test_the_patient_their_doctor_and_the_lab_download_the_exact_bytes(
    client_for, completed, marker, username
):
    client = client_for(username)
    for content_type, original in [
        ("application/pdf", pdf_bytes(marker)),
        ("image/png", png_bytes(marker)),
    ]:
        response = download(client, file_of(completed, content_type))
        assert response.status_code == 200
        assert response.streaming
        assert body(response) == original
        assert response["Content-Type"] == content_type
        assert response["Content-Length"] == str(len(original))


def test_a_download_is_an_attachment_that_is_never_sniffed_or_cached(client_for, completed, marker):
    response = download(client_for("patient1"), file_of(completed, "application/pdf"))
    assert response["Content-Disposition"] == f'attachment; filename="report-{marker.decode()}.pdf"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "no-store"
    assert "sandbox" in response["Content-Security-Policy"]


def test_every_download_is_audited(client_for, completed):
    lab_file = file_of(completed, "image/png")
    body(download(client_for("doctor1"), lab_file))
    entry = latest_audit("phi.file_read")
    assert entry.actor == "doctor1"
    assert entry.outcome == "ok"
    assert entry.target_id == str(lab_file.pk)
    assert entry.patient_id == str(completed.patient_id)
    assert entry.details["via"] == "care-team"


@pytest.mark.parametrize("username", ["patient2", "doctor2", "admin"])
def test_another_patient_an_unassigned_doctor_and_the_officer_get_404(
    client_for, completed, marker, username
):
    lab_file = file_of(completed, "application/pdf")
    response = download(client_for(username), lab_file)
    assert response.status_code == 404
    assert marker not in body(response)
    entry = latest_audit("access.denied")
    assert entry.actor == username
    assert entry.outcome == "denied"
    assert latest_audit("phi.file_read") is None or latest_audit("phi.file_read").actor != username


def test_an_anonymous_visitor_is_sent_to_log_in(client_for, completed):
    response = download(client_for(None), file_of(completed, "application/pdf"))
    assert response.status_code == 302
    assert reverse("accounts:login") in response["Location"]


def test_an_unknown_file_is_404_and_audited(client_for):
    missing = uuid.uuid4()
    response = client_for("patient1").get(reverse("labs:file", args=[missing]))
    assert response.status_code == 404
    assert latest_audit("access.denied").target_id == str(missing)


def test_a_doctor_with_emergency_access_may_download_and_it_raises_an_alert(
    client_for, users, patients, completed, marker
):
    clinic.do_break_glass(users["doctor2"], patients["patient1"], reason=EMERGENCY_REASON)
    response = download(client_for("doctor2"), file_of(completed, "application/pdf"))
    assert body(response) == pdf_bytes(marker)
    entry = latest_audit("phi.file_read")
    assert entry.actor == "doctor2"
    assert entry.outcome == "alert"
    assert entry.details["via"] == "break-glass"


def test_a_download_is_get_only(client_for, completed):
    url = reverse("labs:file", args=[file_of(completed, "application/pdf").pk])
    assert client_for("patient1").post(url).status_code == 405


# -- signatures ------------------------------------------------------------------------------------


def test_a_new_result_has_a_valid_signature(completed):
    values, status = labs.result_status(completed)
    assert status == "valid"
    assert values["values"] == "Ferritin 85 ug/L"


def test_editing_the_values_in_the_database_makes_the_result_tampered(
    client_for, completed, lab_request
):
    other = LabResult.objects.exclude(pk=completed.pk).filter(patient=completed.patient).first()
    assert other is not None  # patient1's demo HbA1c result
    # A valid ciphertext from elsewhere, and a flipped bit: both must break the seal.
    for forged in [bytes(other.values_enc), flip_last_byte(bytes(completed.values_enc))]:
        LabResult.objects.filter(pk=completed.pk).update(values_enc=forged)
        assert labs.result_status(result_for(lab_request))[1] == "tampered"
    html = (
        client_for("labtech1")
        .get(reverse("labs:request_detail", args=[lab_request.pk]))
        .content.decode()
    )
    assert 'data-signature="tampered"' in html


def test_replacing_a_stored_file_with_another_files_ciphertext_makes_the_result_tampered(
    client_for, completed, marker
):
    pdf, png = file_of(completed, "application/pdf"), file_of(completed, "image/png")
    shutil.copyfile(stored_path(png), stored_path(pdf))
    assert labs.result_status(completed)[1] == "tampered"
    assert labs.result_status(completed, check_files=False)[1] == "valid"  # rows alone: intact
    response = download(client_for("patient1"), pdf)
    assert response.status_code == 409
    assert marker not in body(response)
    assert b"\x89PNG" not in body(response)


# -- tampered files are never served ---------------------------------------------------------------


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


def test_a_tampered_file_download_gives_an_error_not_the_data(
    client_for, completed, marker, caplog
):
    lab_file = file_of(completed, "application/pdf")
    path = stored_path(lab_file)
    path.write_bytes(flip_last_byte(path.read_bytes()))
    response = download(client_for("patient1"), lab_file)
    assert response.status_code == 409
    assert not response.streaming
    assert "failed its integrity check" in response.content.decode()
    assert marker not in response.content
    entry = latest_audit("phi.file_read")
    assert entry.outcome == "alert"
    assert entry.target_id == str(lab_file.pk)
    assert entry.details["error"] == "integrity"
    # The log says which file, never what is in it or what it is called.
    assert str(lab_file.pk) in caplog.text
    assert marker.decode() not in caplog.text


def test_a_large_file_tampered_at_its_end_sends_none_of_its_beginning(
    client_for, lab_request, marker
):
    # Three chunks: the first would authenticate and go out if the view streamed before checking.
    size = 2 * streaming.DEFAULT_CHUNK_BYTES + 1000
    submit(client_for("labtech1"), lab_request, pdf_upload(marker, padding=size))
    lab_file = result_for(lab_request).files.get()
    path = stored_path(lab_file)
    path.write_bytes(flip_last_byte(path.read_bytes()))
    response = download(client_for("doctor1"), lab_file)
    assert response.status_code == 409
    assert b"%PDF" not in body(response)
    assert marker not in body(response)


def test_a_file_changed_after_the_check_aborts_the_transfer_and_raises_an_alert(
    client_for, completed
):
    # The race the up-front check cannot close: the file changes between the check and the
    # streaming pass. The stream must fail (the server then aborts the transfer), not go on.
    lab_file = file_of(completed, "application/pdf")
    response = download(client_for("patient1"), lab_file)
    assert response.status_code == 200
    path = stored_path(lab_file)
    path.write_bytes(flip_last_byte(path.read_bytes()))
    with pytest.raises(DecryptionError):
        body(response)
    entry = latest_audit("phi.file_read")
    assert entry.outcome == "alert"
    assert entry.details["problem"] == "changed while being sent"


def test_a_truncated_file_is_not_served(client_for, lab_request, marker):
    submit(
        client_for("labtech1"),
        lab_request,
        pdf_upload(marker, padding=streaming.DEFAULT_CHUNK_BYTES),
    )
    lab_file = result_for(lab_request).files.get()
    path = stored_path(lab_file)
    path.write_bytes(path.read_bytes()[:-(100)])
    assert download(client_for("patient1"), lab_file).status_code == 409
    assert labs.result_status(result_for(lab_request))[1] == "tampered"


def test_a_missing_file_is_reported_not_crashed_on(client_for, completed):
    lab_file = file_of(completed, "image/png")
    stored_path(lab_file).unlink()
    assert download(client_for("patient1"), lab_file).status_code == 409
    assert labs.result_status(completed)[1] == "tampered"


def test_a_file_row_pointing_at_another_files_storage_is_not_served(client_for, completed, marker):
    pdf, png = file_of(completed, "application/pdf"), file_of(completed, "image/png")
    LabFile.objects.filter(pk=pdf.pk).update(storage_name="swap")
    LabFile.objects.filter(pk=png.pk).update(storage_name=pdf.storage_name)
    response = download(client_for("patient1"), LabFile.objects.get(pk=png.pk))
    assert response.status_code == 409
    assert marker not in body(response)


# -- download names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "expected"),
    [
        ("report.pdf", "application/pdf", "report.pdf"),
        ("../../etc/passwd", "application/pdf", "passwd.pdf"),
        ("C:\\Users\\lab\\scan.PNG", "image/png", "scan.PNG"),
        ("report.html", "application/pdf", "report.html.pdf"),
        ("photo.jpeg", "image/jpeg", "photo.jpeg"),
        ('a"b;c\r\nSet-Cookie: x.pdf', "application/pdf", "abcSet-Cookie x.pdf"),
        ("evil\u202efdp.exe", "application/pdf", "evilfdp.exe.pdf"),
        ("", "application/pdf", "lab-file.pdf"),
        (None, "image/png", "lab-file.png"),
        ("...", "image/jpeg", "lab-file.jpg"),
    ],
)
def test_download_names_are_sanitised(name, content_type, expected):
    assert download_name(name, content_type) == expected


def test_a_non_ascii_name_is_sent_in_rfc_6266_form(client_for, lab_request, marker):
    submit(client_for("labtech1"), lab_request, pdf_upload(marker, name="Befund-Müller.pdf"))
    lab_file = result_for(lab_request).files.get()
    response = download(client_for("patient1"), lab_file)
    assert response["Content-Disposition"] == "attachment; filename*=utf-8''Befund-M%C3%BCller.pdf"
