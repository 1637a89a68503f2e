"""The request being served, for audit entries written without one (a stored value found
tampered while a page is built), and what the security layer left for the end of the request."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from django.http import HttpRequest

_current: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "carevault_security_request", default=None
)


def current_request() -> HttpRequest | None:
    return _current.get()


def enter(request: HttpRequest) -> contextvars.Token[HttpRequest | None]:
    return _current.set(request)


def leave(token: contextvars.Token[HttpRequest | None]) -> None:
    _current.reset(token)


@dataclass
class Pending:
    """Set on ``request.carevault_security`` by the middleware: a session to end when the view
    is done (ending it mid-view would leave the view with an anonymous user half-way through)."""

    end_session: str = ""  # why ("" : nothing to do)


def pending(request: HttpRequest) -> Pending | None:
    value = getattr(request, "carevault_security", None)
    return value if isinstance(value, Pending) else None
