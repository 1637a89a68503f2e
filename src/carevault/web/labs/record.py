"""The lab work on a patient's record pages (registered with the clinic in apps.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from carevault.web.clinic.models import Patient
from carevault.web.clinic.paging import RECORD_PAGE_SIZE, Cursor, Slice, keyset

from .actions import result_status
from .models import LabFile, LabRequest, LabResult

PhiValues = dict[str, str | None]

# What the record read's audit entry names when the page shows the lab work.
LAB_SECTIONS = ("lab_requests", "lab_results")


@dataclass
class LabItem:
    request: LabRequest
    request_values: PhiValues
    result: LabResult | None = None
    result_values: PhiValues = field(default_factory=dict)
    status: str = ""
    files: list[tuple[LabFile, str | None]] = field(default_factory=list)


def lab_work(
    patient: Patient, before: Cursor | None, limit: int = RECORD_PAGE_SIZE
) -> Slice[LabItem]:
    """A slice of the patient's lab requests (newest first) with their results: only these
    are decrypted and their signatures checked. Only called under an audited read whose entry
    names these sections (LAB_SECTIONS): the record page's, or the section endpoint's."""
    requests, more = keyset(
        LabRequest.objects.filter(patient=patient).select_related("requested_by"),
        before,
        limit=limit,
    )
    results = {
        r.request_id: r
        for r in LabResult.objects.filter(patient=patient, request__in=[q.pk for q in requests])
        .select_related("request", "technician", "signing_key")
        .prefetch_related("files")
    }
    items = []
    for lab_request in requests:
        item = LabItem(lab_request, lab_request.unseal_all())
        result = results.get(lab_request.pk)
        if result is not None:
            item.result = result
            item.result_values, item.status = result_status(result)
            item.files = [(f, f.unseal_or_none("filename")) for f in result.files.all()]
        items.append(item)
    return Slice(items, more)
