"""Lab workflow: doctors request tests; technicians, who see only a sample code and the test,
record signed results with optional files. The actions take the acting user and a
:class:`~carevault.web.clientinfo.ClientInfo` (never a request) and write the audit log."""

from __future__ import annotations

import hmac
import io
from dataclasses import dataclass
from typing import Any, BinaryIO

from django.conf import settings
from django.db import transaction
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from carevault.crypto import CryptoError
from carevault.web.accounts.models import Role, User
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import NO_CLIENT, ClientInfo
from carevault.web.clinic.actions import SignatureStatus, _text, verify_signed
from carevault.web.clinic.models import Patient
from carevault.web.errors import Conflict, NotAllowed, ValidationFailed
from carevault.web.vault import adaptive, service
from carevault.web.vault.context import write_context

from . import storage
from .models import LabFile, LabRequest, LabRequestStatus, LabResult

MAX_FILES = 5


@dataclass(frozen=True)
class Upload:
    """A file as received: its name (PHI: sealed), the browser's claimed type, the bytes."""

    name: str
    declared_type: str
    data: BinaryIO
    size: int


@transaction.atomic
def do_request_lab_test(
    acting_user: User,
    patient: Patient,
    *,
    test: str,
    notes: str = "",
    client: ClientInfo = NO_CLIENT,
) -> LabRequest:
    if acting_user.role != Role.DOCTOR:
        raise NotAllowed("only doctors request lab tests")
    lab_request = LabRequest(patient=patient, requested_by=acting_user)
    n = lab_request.seal(
        write_context(acting_user, client),
        test=_text(test, "test", limit=200),
        notes=_text(notes, "notes", required=False),
    )
    lab_request.save()
    service.count_encryptions(patient.pk, n)
    record(
        "lab.request", actor=acting_user, target=lab_request, patient_id=patient.pk, client=client
    )
    return lab_request


def result_record(
    result: LabResult, values: dict[str, str | None], files: list[dict[str, Any]]
) -> dict[str, Any]:
    """What a lab report signature covers: the request, the values, the comment, every file."""
    return {
        "id": str(result.pk),
        "request": str(result.request_id),
        "sample": result.request.sample_code,
        "patient": str(result.patient_id),
        "technician": result.technician.username,
        "values": values["values"],
        "comment": values["comment"],
        "files": sorted(files, key=lambda f: f["id"]),
        "created_at": result.created_at.isoformat(),
    }


class UploadRejected(ValidationFailed):
    """A file refused by its size or content: the reason and the types seen, for the audit log
    and the threat detection (a technician's slip looks different from a stream of disguised
    files). Never the file name: it can name the patient."""

    def __init__(self, message: str, *, reason: str, declared: str, sniffed: str, size: int):
        super().__init__(message, field="files")
        self.facts = {
            "reason": reason,
            "declared_type": declared[:100],
            "sniffed_type": sniffed,
            "bytes": size,
        }


def _check_upload(upload: Upload) -> str:
    # Media types are case-insensitive (RFC 9110 8.3.1): "Application/PDF" is no mismatch.
    declared = upload.declared_type.strip().lower()
    name = upload.name or "file"

    def rejected(message: str, reason: str, sniffed: str = "") -> UploadRejected:
        return UploadRejected(
            message, reason=reason, declared=declared, sniffed=sniffed, size=upload.size
        )

    if upload.size > settings.LAB_UPLOAD_MAX_BYTES:
        # filesizeformat, not "// 2**20 MB": a limit below 1 MB read "larger than 0 MB".
        limit = filesizeformat(settings.LAB_UPLOAD_MAX_BYTES)
        raise rejected(f"{name} is larger than {limit}", "too_large")
    if upload.size == 0:
        raise rejected(f"{name} is empty", "empty")
    head = upload.data.read(storage.HEAD_BYTES)
    upload.data.seek(0)
    content_type = storage.sniff(head)
    if content_type is None:
        # The audit (and the threat detection reading it) learns what the content is instead.
        raise rejected(
            f"{name} is not a PDF, PNG or JPEG file (checked by its content)",
            "unrecognised",
            storage.describe(head),
        )
    if declared and declared != content_type:
        raise rejected(
            f"{name} claims to be {declared} but its content is {content_type}",
            "type_mismatch",
            content_type,
        )
    return content_type


def _checked_uploads(
    acting_user: User, lab_request: LabRequest, uploads: list[Upload], client: ClientInfo
) -> list[str]:
    """Every upload's content type, or the first refusal, audited before it is raised."""
    try:
        return [_check_upload(u) for u in uploads]
    except UploadRejected as exc:
        with transaction.atomic():
            record(
                "lab.upload_rejected",
                actor=acting_user,
                outcome=Outcome.FAILED,
                target=lab_request,
                patient_id=lab_request.patient_id,
                client=client,
                details=exc.facts,
            )
        raise


def do_submit_lab_result(
    acting_user: User,
    lab_request: LabRequest,
    *,
    values: str,
    comment: str = "",
    uploads: list[Upload] | None = None,
    client: ClientInfo = NO_CLIENT,
) -> LabResult:
    """Record and sign a result. All or nothing: on any error no row and no file remains."""
    if acting_user.role != Role.LABTECH:
        raise NotAllowed("only lab technicians record results")
    uploads = uploads or []
    if len(uploads) > MAX_FILES:
        raise ValidationFailed(f"at most {MAX_FILES} files per result", field="files")
    texts = {
        "values": _text(values, "values", limit=4000),
        "comment": _text(comment, "comment", required=False, limit=2000),
    }
    # Validate everything before writing anything.
    types = _checked_uploads(acting_user, lab_request, uploads, client)
    # One context for the whole result: its files and its values are one write.
    ctx = write_context(acting_user, client)
    stored: list[str] = []
    try:
        with transaction.atomic():
            locked = LabRequest.objects.select_for_update().get(pk=lab_request.pk)
            if locked.status != LabRequestStatus.REQUESTED:
                raise Conflict("this test already has a result")
            key_record, key = service.signing_key_for(acting_user)
            result = LabResult(
                request=locked,
                patient_id=locked.patient_id,
                technician=acting_user,
                signing_key=key_record,
                created_at=timezone.now().replace(microsecond=0),
            )
            files: list[tuple[LabFile, dict[str, Any]]] = []
            for upload, content_type in zip(uploads, types, strict=True):
                lab_file = LabFile(
                    result=result, patient_id=locked.patient_id, content_type=content_type
                )
                # The file's key is sealed under the suite the policy picks for the file (its
                # size is the payload), logged with the file's record below.
                decision = adaptive.decide(ctx, locked.phi_data_class({}), upload.size)
                name, digest, size = storage.store(
                    locked.patient_id, lab_file.pk, upload.data, suite=decision.suite
                )
                stored.append(name)
                lab_file.storage_name, lab_file.size = name, size
                lab_file.seal(
                    ctx, filename=_text(upload.name, "file name", limit=255), sha256=digest
                )
                adaptive.log_decision(
                    storage.CONTENT_TABLE, lab_file.pk, locked.patient_id, decision
                )
                files.append(
                    (
                        lab_file,
                        {
                            "id": str(lab_file.pk),
                            "sha256": digest,
                            "size": size,
                            "type": content_type,
                        },
                    )
                )
            result.signature = key.sign(
                result_record(result, dict(texts), [f for _, f in files]), purpose="lab-report"
            ).to_text()
            n = result.seal(ctx, **texts)
            result.save()
            for lab_file, _ in files:
                lab_file.save()
            locked.status = LabRequestStatus.COMPLETED
            locked.save(update_fields=["status"])
            service.count_encryptions(locked.patient_id, n + 2 * len(files))
            record(
                "lab.result",
                actor=acting_user,
                target=result,
                patient_id=locked.patient_id,
                client=client,
                details={
                    "files": len(files),
                    "key_id": key_record.key_id,
                    "bytes": sum(f["size"] for _, f in files),
                    "types": sorted({f["type"] for _, f in files}),
                },
            )
    except BaseException:
        for name in stored:
            storage.remove(name)
        raise
    return result


def file_facts(lab_file: LabFile, *, check_content: bool = True) -> dict[str, Any] | None:
    """What the signature says about a file, or None if the file no longer matches it.

    The signature covers the sealed digest, not the stored bytes: without ``check_content`` a
    stored file replaced on disk (by another file's ciphertext, say) would still look valid."""
    digest = lab_file.unseal_or_none("sha256")
    if digest is None:
        return None
    if check_content:
        try:
            actual, size = storage.plaintext_digest(
                lab_file.patient_id, lab_file.pk, lab_file.storage_name
            )
        except CryptoError:
            lab_file.report_decryption_failure("file")
            return None
        except OSError:
            return None
        if not hmac.compare_digest(actual, digest) or size != lab_file.size:
            return None
    return {
        "id": str(lab_file.pk),
        "sha256": digest,
        "size": lab_file.size,
        "type": lab_file.content_type,
    }


def result_status(
    result: LabResult, *, check_files: bool = True
) -> tuple[dict[str, str | None], str]:
    """The decrypted values, and 'valid' or 'tampered'. ``check_files`` (the default) decrypts
    every stored file to compare it with its signed digest; a page listing many results may pass
    False and check the rows only (a file is checked again whenever it is downloaded)."""
    values = result.unseal_all()
    facts = [file_facts(f, check_content=check_files) for f in result.files.all()]
    if any(f is None for f in facts):
        return values, SignatureStatus.TAMPERED
    status = verify_signed(
        values,
        lambda v: result_record(result, v, facts),  # type: ignore[arg-type]
        result.signature,
        result.signing_key,
        result.technician,
        "lab-report",
    )
    if status == SignatureStatus.TAMPERED and None not in values.values():
        # Fields that do not decrypt were reported already (PhiModel.unseal_or_none).
        result.report_signature_failure()
    return values, status


def upload_from_bytes(name: str, declared_type: str, data: bytes) -> Upload:
    return Upload(name=name, declared_type=declared_type, data=io.BytesIO(data), size=len(data))
