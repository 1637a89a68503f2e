"""The security layer's request hooks: the request being served is known to audit entries
written without one; a session the security layer decided to end is ended once the view is done
(and the response it built is replaced by the way to the login page); every request's latency
feeds host telemetry.

It sits right after AuthenticationMiddleware, so it wraps the session guard too (a refusal there
is an event like any other) and knows ``request.user``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from carevault.web.login import sessions
from carevault.web.login.middleware import SessionGuardMiddleware
from carevault.web.login.views import LOGIN_FAILED

from . import context
from .batching import after_request

logger = logging.getLogger("carevault.security")

ENDED_MESSAGE = "Your session was ended by a security check. Please log in again."


class SecurityMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request._cv_started = started  # type: ignore[attr-defined]
        pending = context.Pending()
        request.carevault_security = pending  # type: ignore[attr-defined]
        token = context.enter(request)
        try:
            response = self.get_response(request)
        finally:
            context.leave(token)
        if pending.end_session:
            response = self._end(request, response, pending.end_session)
        after_request((time.perf_counter() - started) * 1000)
        return response

    @staticmethod
    def _end(request: HttpRequest, response: HttpResponse, reason: str) -> HttpResponse:
        try:
            sessions.end_session(request)
            if request.path == reverse("accounts:login_packet"):
                # A login contained as it succeeds must look like every failed login (one status,
                # one body): anything else would tell a guesser that the password was right.
                failed = JsonResponse({"ok": False, "error": LOGIN_FAILED}, status=400)
                failed["Cache-Control"] = "no-store"
                return failed
            return SessionGuardMiddleware.to_login(request, ENDED_MESSAGE)
        except Exception:
            logger.exception("ending the session (%s) failed", reason)
            return response
