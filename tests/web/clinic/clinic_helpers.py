"""Small helpers shared by the clinic tests."""

from __future__ import annotations

import re
from typing import Any

from carevault.web.audit.models import AuditEntry

HTMX = {"HX-Request": "true"}


def text(response: Any) -> str:
    return response.content.decode()


def entries(action: str, **filters: Any) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action, **filters).order_by("seq"))


def is_fragment(response: Any) -> bool:
    """An htmx answer is the piece to swap, not a whole page."""
    return "<html" not in text(response)


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"\sstyle=", re.IGNORECASE)
