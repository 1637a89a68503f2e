"""The security layer's request hooks: the request being served is known to the layer as a
:class:`~.context.Serving` (its client and user, never the request); what the layer decided for
the session while the view ran is carried out once the view is done — a fresh second factor
demanded, or the session ended (and the response the view built replaced by the way to the login
page); every request's latency feeds host telemetry.

It sits right after AuthenticationMiddleware, so it wraps the session guard too (a refusal there
is an event like any other) and knows ``request.user``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from carevault.web.accounts.models import User
from carevault.web.audit import log
from carevault.web.clientinfo import ClientInfo
from carevault.web.login import factor_state, sessions
from carevault.web.login.middleware import SessionGuardMiddleware
from carevault.web.login.views import LOGIN_FAILED

from . import context, scorer
from .batching import after_request

logger = logging.getLogger("carevault.security")

ENDED_MESSAGE = "Your session was ended by a security check. Please log in again."


class SecurityMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request._cv_started = started  # type: ignore[attr-defined]
        serving = serving_for(request)
        token = context.enter(serving)
        scorer.request_started()
        try:
            try:
                response = self.get_response(request)
            finally:
                context.leave(token)
            pending = serving.pending
            if pending.end_session:
                response = self._end(request, response, pending.end_session)
            elif pending.step_up:
                self._step_up(request, pending.step_up)
            after_request((time.perf_counter() - started) * 1000)
        finally:
            scorer.request_finished()
        return response

    @staticmethod
    def _step_up(request: HttpRequest, reason: str) -> None:
        # The layer's own act, as when it was decided: offered to no observer.
        try:
            with log.unobserved():
                factor_state.demand_step_up(request, reason)
        except Exception:
            logger.exception("demanding a step-up (%s) failed", reason)

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


def serving_for(request: HttpRequest) -> context.Serving:
    """The request as the security layer may see it: read when asked (a login changes both the
    user and the session while the request is served)."""

    def user() -> User | None:
        current = getattr(request, "user", None)
        return current if isinstance(current, User) and current.is_authenticated else None

    def step_up_demanded() -> bool:
        return hasattr(request, "session") and factor_state.step_up_demanded(request)

    def session_key() -> str:
        session = getattr(request, "session", None)
        return str(session.session_key or "") if session is not None else ""

    return context.Serving(
        client=lambda: ClientInfo.from_request(request),
        user=user,
        step_up_demanded=step_up_demanded,
        session_key=session_key,
    )
