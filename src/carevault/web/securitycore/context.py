"""What the security layer may know of the request being served — never the request itself.

The security middleware opens a :class:`Serving` for each request. Audit entries written without
a client (a stored value found tampered while a page is built) are tied to it, and the layer
leaves on it what to do to the session once the view is done: a response decided while the view
runs is carried out by the middleware, which holds the request, so nothing below the views
touches a session or a response. Outside a request (the command line, the worker, the attack
lab) there is none, and no event is "live".
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from carevault.web.clientinfo import ClientInfo

if TYPE_CHECKING:
    from carevault.web.accounts.models import User


@dataclass
class Pending:
    """What the layer decided for the session being served, carried out at the end of the
    request (ending it mid-view would leave the view with an anonymous user half-way through)."""

    end_session: str = ""  # why ("": nothing to do)
    step_up: str = ""  # why a fresh second factor is demanded ("": not demanded)


@dataclass(frozen=True)
class Serving:
    """The request being served, as the security layer sees it. Read when asked, because the
    request changes as it is served (a login changes the user and the session): ``client()`` is
    the client now (its session hash that of the session now), ``user()`` the signed-in user or
    None, ``step_up_demanded()`` whether the session already owes a fresh second factor."""

    client: Callable[[], ClientInfo]
    user: Callable[[], User | None]
    step_up_demanded: Callable[[], bool]
    pending: Pending = field(default_factory=Pending)
    # The session's key, for the background scorer to act on this session after the request
    # (kept in memory only, never stored: scorer.py).
    session_key: Callable[[], str] = lambda: ""


_current: contextvars.ContextVar[Serving | None] = contextvars.ContextVar(
    "carevault_security_serving", default=None
)


def current() -> Serving | None:
    return _current.get()


def enter(serving: Serving) -> contextvars.Token[Serving | None]:
    return _current.set(serving)


def leave(token: contextvars.Token[Serving | None]) -> None:
    _current.reset(token)
