"""Parts of a patient's record that other apps keep (the lab work), shown on the clinic's record
pages without the clinic importing those apps.

The clinic sits below them: labs builds on patients and care teams. So an app that adds to the
record registers a :class:`RecordPart` at ``AppConfig.ready()`` (the way audit observers are
registered), and the record pages show every registered part: its rows read for the page, the
sections the record's audit entry names, and, on the doctor's page, its writable section.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms

from carevault.web.clientinfo import ClientInfo

from .models import Patient
from .paging import RECORD_PAGE_SIZE, Cursor, Slice


@dataclass(frozen=True)
class Section:
    """One writable part of the record page: its form, its partial, the action it calls."""

    name: str
    form_class: type[forms.Form]
    form_key: str
    # (acting user, patient, the form's cleaned data, the client) -> the written row
    write: Callable[[Any, Patient, dict[str, Any], ClientInfo], object]

    @property
    def template(self) -> str:
        return f"clinic/partials/detail_{self.name}.html"


@dataclass(frozen=True)
class RecordPart:
    """What an app adds to the record pages: ``read(patient, before, limit)`` returns a
    :class:`~.paging.Slice` of its rows older than the cursor ``before`` (newest first,
    decrypting only those rows); the first slice goes into the page's context under ``name``
    and later ones are served by the record's section endpoint ("show more").
    ``audit_sections`` are named by the record read's audit entry (reading the part is part of
    that read); ``section`` is its writable section on the doctor's page."""

    name: str
    audit_sections: tuple[str, ...]
    read: Callable[[Patient, Cursor | None, int], Slice[Any]]
    section: Section | None = None
    title: str = ""


_parts: dict[str, RecordPart] = {}


def register(part: RecordPart) -> None:
    _parts[part.name] = part


def parts() -> tuple[RecordPart, ...]:
    return tuple(_parts.values())


def audit_sections() -> tuple[str, ...]:
    return tuple(name for part in parts() for name in part.audit_sections)


def part(name: str) -> RecordPart | None:
    return _parts.get(name)


def read_all(patient: Patient, limit: int = RECORD_PAGE_SIZE) -> dict[str, Slice[Any]]:
    """Every registered part's first slice for ``patient``. Only called right after
    ``read_patient_record``, whose audit entry names them (:func:`audit_sections`)."""
    return {part.name: part.read(patient, None, limit) for part in parts()}
