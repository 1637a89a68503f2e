"""Who is on the other end of a write, without the request: what the layers below the views get.

Views turn the :class:`~django.http.HttpRequest` into a frozen :class:`ClientInfo` once; actions,
the audit log and the security layer take that. So the command line, the background worker and
the attack lab call the same actions with :data:`NO_CLIENT` (or a ClientInfo of their own) and
no fake request, and nothing below a view can reach into a session or a response.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from django.utils.crypto import salted_hmac

from carevault.web.net import client_address

# The user agent is kept to this many characters: enough to tell clients apart, bounded in size.
USER_AGENT_LIMIT = 512


def session_hash(session_key: str) -> str:
    """A session's key as the security layer stores it: keyed, so a leaked event table cannot
    be replayed as cookies."""
    return salted_hmac("carevault.security.session", session_key).hexdigest()[:32]


@dataclass(frozen=True)
class ClientInfo:
    """The client behind one request: its address (behind the trusted proxies), its user agent,
    the keyed hash of its session ("" outside a session) and when the request began (a
    ``time.perf_counter()`` reading, for the latency the detectors see; None outside one)."""

    address: str = ""
    user_agent: str = ""
    session: str = ""
    started: float | None = None

    @classmethod
    def from_request(cls, request: HttpRequest | None) -> ClientInfo:
        if request is None:
            return NO_CLIENT
        started = getattr(request, "_cv_started", None)
        return cls(
            address=client_address(request),
            user_agent=str(request.META.get("HTTP_USER_AGENT", ""))[:USER_AGENT_LIMIT],
            session=session_hash(_session_key(request)) if _session_key(request) else "",
            started=started if isinstance(started, float) else None,
        )

    @property
    def agent_hash(self) -> str:
        """A short digest of the user agent (what the detectors compare, not the text)."""
        if not self.user_agent:
            return ""
        return hashlib.sha256(self.user_agent.encode()).hexdigest()[:16]

    def elapsed_ms(self) -> float:
        """Milliseconds since the request began (0 outside a request)."""
        if self.started is None:
            return 0.0
        return round((time.perf_counter() - self.started) * 1000, 3)


# A write made outside any request: a command, a background job, the demo seed.
NO_CLIENT = ClientInfo()


def _session_key(request: HttpRequest) -> str:
    session = getattr(request, "session", None)
    if not isinstance(session, SessionBase):
        return ""
    return str(session.session_key or "")
