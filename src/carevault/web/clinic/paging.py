"""Keyset pages of a patient's record sections, newest first (issue 16).

A section (notes, diagnoses, ...) is read a slice at a time: the rows strictly older than a
cursor, ordered by (time, id) descending, at most :data:`RECORD_PAGE_SIZE` of them. The cursor
is the last shown row's (time, id), so the next slice continues exactly where the previous one
stopped, with no duplicate and no gap even when rows share a timestamp, and the query walks an
index on (patient, time, id) instead of counting past an OFFSET. Only the rows of a slice are
ever decrypted.

The cursor travels in a URL (``?before=``): microseconds since the epoch and the row id in hex,
``<int>.<32 hex>``. It names no PHI (times and random ids are in the clear in the database too).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from django.db.models import Model, Q, QuerySet

from carevault.web.errors import ValidationFailed

RECORD_PAGE_SIZE = 20

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CURSOR = re.compile(r"(-?\d{1,18})\.([0-9a-f]{32})")

T = TypeVar("T")


class BadCursor(ValidationFailed):
    """A ``before`` cursor that is not one this server writes: a 400, never a 500."""

    def __init__(self) -> None:
        super().__init__("before must be a cursor from a 'show more' link", field="before")


@dataclass(frozen=True)
class Cursor:
    at: dt.datetime
    pk: uuid.UUID

    def __str__(self) -> str:
        delta = self.at - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return f"{micros}.{self.pk.hex}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        """None for no cursor (the first slice); :class:`BadCursor` for anything malformed."""
        if text is None:
            return None
        match = _CURSOR.fullmatch(text.strip())
        if match is None:
            raise BadCursor()
        try:
            at = _EPOCH + dt.timedelta(microseconds=int(match.group(1)))
        except OverflowError:
            raise BadCursor() from None
        return cls(at, uuid.UUID(hex=match.group(2)))


@dataclass
class Slice(Generic[T]):
    """One page of a section: its rows (decrypted as the reader made them) and the cursor of
    the next, older slice (None: this one reaches the oldest row)."""

    rows: list[T] = field(default_factory=list)
    next: Cursor | None = None


M = TypeVar("M", bound=Model)


def keyset(
    rows: QuerySet[M], before: Cursor | None, *, order: str = "created_at", limit: int
) -> tuple[list[M], Cursor | None]:
    """At most ``limit`` rows of ``rows`` older than ``before`` by (``order``, pk), newest first,
    and the cursor after the last of them if more remain (one extra row is fetched to know)."""
    if before is not None:
        # The first bound lets the database seek in the (patient, time, id) index (the OR
        # alone would make it scan from the newest row); the second breaks timestamp ties by id.
        rows = rows.filter(**{f"{order}__lte": before.at}).filter(
            Q(**{f"{order}__lt": before.at}) | Q(**{order: before.at}, pk__lt=before.pk)
        )
    fetched = list(rows.order_by(f"-{order}", "-pk")[: limit + 1])
    page = fetched[:limit]
    more = len(fetched) > limit and page
    return page, (Cursor(getattr(page[-1], order), page[-1].pk) if more else None)
