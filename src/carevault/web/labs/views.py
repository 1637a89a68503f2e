"""The lab technician's pages (queue, request, result) and the download of lab files.

A technician works from the pseudonymous sample code: these views never load the patient row
and hand the templates plain rows holding only what the lab may see, so no template can reach
``lab_request.patient`` by accident. Nothing here logs PHI: log lines name row ids only.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from carevault.crypto import CryptoError
from carevault.web.access import deny, role_required
from carevault.web.accounts.models import Role, User
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo
from carevault.web.clinic.access import patient_for_user
from carevault.web.errors import ActionError

from . import actions, storage
from .forms import LabResultForm, request_limit
from .models import LabFile, LabRequest, LabRequestStatus, LabResult

logger = logging.getLogger(__name__)

PAGE_SIZE = 20


def _user(request: HttpRequest) -> User:
    # role_required / login_required ran first; this narrows the type for the actions.
    if not isinstance(request.user, User):
        raise PermissionDenied("log in first")
    return request.user


# -- what a technician sees --------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRow:
    """A lab request as the lab sees it: sample code and test, nothing of the patient."""

    id: uuid.UUID
    sample_code: str
    test: str | None  # None: the sealed value did not authenticate (shown as such)
    notes: str | None
    requested_at: dt.datetime
    completed: bool


def _request_row(lab_request: LabRequest) -> RequestRow:
    return RequestRow(
        id=lab_request.pk,
        sample_code=lab_request.sample_code,
        test=lab_request.unseal_or_none("test"),
        notes=lab_request.unseal_or_none("notes"),
        requested_at=lab_request.created_at,
        completed=lab_request.status == LabRequestStatus.COMPLETED,
    )


@dataclass(frozen=True)
class FileRow:
    id: uuid.UUID
    name: str | None
    content_type: str
    size: int


@dataclass(frozen=True)
class ResultView:
    values: str | None
    comment: str | None
    status: str  # actions.result_status: "valid" or "tampered"
    technician: str
    recorded_at: dt.datetime
    files: list[FileRow]


def _result_view(result: LabResult) -> ResultView:
    values, status = actions.result_status(result)
    return ResultView(
        values=values["values"],
        comment=values["comment"],
        status=status,
        technician=result.technician.label,
        recorded_at=result.created_at,
        files=[
            FileRow(f.pk, f.unseal_or_none("filename"), f.content_type, f.size)
            for f in result.files.order_by("created_at")
        ],
    )


def _get_lab_request(request: HttpRequest, request_id: uuid.UUID) -> LabRequest:
    lab_request = LabRequest.objects.filter(pk=request_id).first()
    if lab_request is None:
        deny(
            request,
            reason="no such lab request",
            target_type="labs.labrequest",
            target_id=request_id,
        )
        raise Http404  # not reached: deny() raises
    return lab_request


# -- views: the technician -----------------------------------------------------------------------


@role_required(Role.LABTECH)
def queue(request: HttpRequest) -> HttpResponse:
    """Pending requests, newest first, and the results this technician recorded."""
    pending: Page[LabRequest] = Paginator(
        LabRequest.objects.filter(status=LabRequestStatus.REQUESTED).order_by("-created_at"),
        PAGE_SIZE,
    ).get_page(request.GET.get("page"))
    done: Page[LabResult] = Paginator(
        LabResult.objects.filter(technician=_user(request))
        .select_related("request")
        .order_by("-created_at"),
        PAGE_SIZE,
    ).get_page(request.GET.get("done"))
    pending_rows = [_request_row(r) for r in pending]
    done_rows = [(_request_row(r.request), r.created_at) for r in done]
    # Test names are PHI: a read of them is audited like any other (sample codes only: they are
    # the lab's pseudonyms, and the entry must not become a list of patients).
    record(
        "phi.read",
        actor=request.user,
        target_type="labs.queue",
        client=ClientInfo.from_request(request),
        details={
            "via": "lab",
            "sections": ["lab_queue"],
            "samples": [r.sample_code for r in pending_rows + [row for row, _ in done_rows]],
        },
    )
    return render(
        request,
        "labs/queue.html",
        {"pending": pending, "pending_rows": pending_rows, "done": done, "done_rows": done_rows},
    )


def _uploads_dropped(request: HttpRequest) -> bool:
    """True if the upload handler threw the files away because the request was too large.

    Django's MemoryFileUploadHandler (the only handler configured: plaintext must never reach a
    temporary file) does not fail on a request above FILE_UPLOAD_MAX_MEMORY_SIZE: it quietly
    drops every file, and the form would then record a result *without* them. The handler marks
    itself ``activated = False`` in that case; the Content-Length check covers the same case
    should the handler's internals change."""
    if any(getattr(h, "activated", True) is False for h in request.upload_handlers):
        return True
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return length > request_limit()


@role_required(Role.LABTECH)
def request_detail(request: HttpRequest, request_id: uuid.UUID) -> HttpResponse:
    """The request (sample code, test, notes) and either the result form or the signed result."""
    lab_request = _get_lab_request(request, request_id)
    status = 200
    if request.method == "POST":
        form = LabResultForm(request.POST, request.FILES)
        if _uploads_dropped(request):
            form.is_valid()  # bind, so the error below is shown with the other fields
            form.add_error(
                "files", "The files are too large to upload together; send fewer or smaller ones."
            )
            status = 400
        elif form.is_valid():
            uploads = [
                actions.Upload(
                    name=f.name or "",
                    declared_type=f.content_type or "",
                    data=cast(BinaryIO, f),  # a File proxies read / readinto / seek
                    size=f.size or 0,
                )
                for f in form.cleaned_data["files"]
            ]
            try:
                actions.do_submit_lab_result(
                    _user(request),
                    lab_request,
                    values=form.cleaned_data["values"],
                    comment=form.cleaned_data["comment"],
                    uploads=uploads,
                    client=ClientInfo.from_request(request),
                )
            except ActionError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
                status = exc.status
            else:
                messages.success(
                    request,
                    f"The result for sample {lab_request.sample_code} is recorded and signed.",
                )
                return redirect("labs:queue")
        else:
            status = 400
        lab_request.refresh_from_db()  # on a conflict, show the result that won
    else:
        form = LabResultForm()
    result = (
        LabResult.objects.filter(request=lab_request)
        .select_related("request", "technician", "signing_key")
        .first()
    )
    record(
        "phi.read",
        actor=request.user,
        target=lab_request,
        patient_id=lab_request.patient_id,
        client=ClientInfo.from_request(request),
        details={"via": "lab", "sections": ["lab_request"] + (["lab_result"] if result else [])},
    )
    context = {
        "lab_request": _request_row(lab_request),
        "result": _result_view(result) if result is not None else None,
        "form": form,
    }
    return render(request, "labs/request_detail.html", context, status=status)


# -- views: downloading a file -------------------------------------------------------------------

EXTENSIONS: dict[str, tuple[str, ...]] = {
    "application/pdf": (".pdf",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
}
_UNSAFE_IN_NAMES = set('"\\/:*?<>|;')


def download_name(name: str | None, content_type: str) -> str:
    """A file name safe to hand to a browser and a desktop: no directories, no control or
    bidirectional characters, and an extension that matches the type the content was sniffed as
    (so "report.html" holding a PDF/HTML polyglot is saved as "report.html.pdf", not opened by
    the browser as a local web page)."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = unicodedata.normalize("NFC", base)
    base = "".join(ch for ch in base if ch.isprintable() and ch not in _UNSAFE_IN_NAMES)
    base = base.strip(" .")[:120] or "lab-file"
    allowed = EXTENSIONS.get(content_type, (".bin",))
    if not base.lower().endswith(allowed):
        base += allowed[0]
    return base


def _file_access(request: HttpRequest, lab_file: LabFile) -> str:
    """How this user may read the file ("self", "care-team", "break-glass", "lab"), or deny."""
    if getattr(request.user, "is_labtech", False):
        return "lab"  # the lab produced the file
    # Patients and doctors: exactly the access they have to the patient's record (404 + audit
    # otherwise, so a file id never confirms that a file exists).
    return patient_for_user(request, lab_file.patient_id, purpose="lab file").via


def _verified(lab_file: LabFile) -> bool:
    """Decrypt the whole file once, without keeping it, and compare it with its sealed digest.

    Files are small (at most LAB_UPLOAD_MAX_BYTES), so a second pass costs milliseconds, and it
    buys the property that matters: a tampered, truncated, swapped or missing file is refused
    *before* the response starts, with a clean error, instead of sending part of it and then
    cutting the connection."""
    expected = lab_file.unseal_or_none("sha256")
    if expected is None:
        return False
    try:
        digest, size = storage.plaintext_digest(
            lab_file.patient_id, lab_file.pk, lab_file.storage_name
        )
    except (CryptoError, OSError):
        return False
    return hmac.compare_digest(digest, expected) and size == lab_file.size


def _stream(request: HttpRequest, lab_file: LabFile) -> Iterator[bytes]:
    chunks = storage.open_decrypted(lab_file.patient_id, lab_file.pk, lab_file.storage_name)
    try:
        yield from chunks
    except (CryptoError, OSError):
        # Reached only if the file changed on disk between the check and this pass. Every chunk
        # already sent authenticated; re-raising makes the server abort the transfer, and the
        # Content-Length header lets the client see that it is incomplete.
        _integrity_alert(request, lab_file, "changed while being sent")
        raise
    # No explicit close: when the server closes this generator (client gone), ``yield from``
    # closes ``chunks`` too, which closes the stored file.


def _integrity_alert(request: HttpRequest, lab_file: LabFile, problem: str) -> None:
    logger.error("lab file %s failed its integrity check (%s)", lab_file.pk, problem)
    record(
        "phi.file_read",
        actor=request.user,
        outcome=Outcome.ALERT,
        target=lab_file,
        patient_id=lab_file.patient_id,
        client=ClientInfo.from_request(request),
        details={"error": "integrity", "problem": problem},
    )


@require_GET
@login_required
def file(request: HttpRequest, file_id: uuid.UUID) -> HttpResponseBase:
    """A lab file, decrypted and streamed, to its patient, their doctors and the lab."""
    lab_file = LabFile.objects.filter(pk=file_id).first()
    if lab_file is None:
        deny(request, reason="no such lab file", target_type="labs.labfile", target_id=file_id)
        raise Http404  # not reached: deny() raises
    via = _file_access(request, lab_file)
    name = lab_file.unseal_or_none("filename")
    if name is None or not _verified(lab_file):
        _integrity_alert(request, lab_file, "does not decrypt or match its signed digest")
        return render(request, "labs/file_error.html", status=409)
    record(
        "phi.file_read",
        actor=request.user,
        outcome=Outcome.ALERT if via == "break-glass" else Outcome.OK,
        target=lab_file,
        patient_id=lab_file.patient_id,
        client=ClientInfo.from_request(request),
        details={"via": via, "size": lab_file.size},
    )
    response = StreamingHttpResponse(_stream(request, lab_file), content_type=lab_file.content_type)
    response["Content-Length"] = str(lab_file.size)
    response["Content-Disposition"] = (
        content_disposition_header(True, download_name(name, lab_file.content_type)) or "attachment"
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    # Should a browser render it anyway, it runs nothing and loads nothing.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
