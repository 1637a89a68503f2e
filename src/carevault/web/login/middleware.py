"""The session guard: every request of a logged-in session is checked before any view runs.

1. :func:`sessions.check`: the client binding (a cookie used from another client), the session
   epoch (revoked: "log out everywhere", the security layer), the idle timeout and the absolute
   timeout; a session without the stamp of a real login is refused too. A refused session is
   audited (``session.refused``), ended, and sent to the login page with a message (JSON 401 for
   the API; an ``HX-Redirect`` for htmx requests, which would otherwise swap the login page into
   a fragment).
2. Step-up (:func:`factor_state.demand_step_up`): while demanded, every request goes to the step-up
   page (users without TOTP: to enrolment) except that page and logging out (JSON 403
   ``step_up_required`` for the API). Static files never reach here (WhiteNoise answers first).

It sits right after AuthenticationMiddleware, so ``request.user`` is known; and before
MessageMiddleware, so the messages it leaves are stored here directly.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.contrib.messages.storage import default_storage
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import NoReverseMatch, reverse

from carevault.web.accounts.models import User

from . import factor_state, sessions

API_PREFIX = "/api/"


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    if request.headers.get("HX-Request") == "true":
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return HttpResponseRedirect(url)


def _with_message(request: HttpRequest, response: HttpResponse, level: int, text: str) -> None:
    # MessageMiddleware has not run for this request (it comes later in the chain and is
    # skipped when this middleware answers), so the message storage is used directly.
    storage = default_storage(request)
    storage.add(level, text)
    storage.update(response)


def _exempt_paths(user: User) -> set[str]:
    names = ["account_security:step_up", "accounts:logout"]
    if not user.has_totp:
        # Enrolment, and the challenge its sealed password field needs (sealed_forms.py).
        names += ["account_security:totp_setup", "accounts:login_challenge"]
    paths = set()
    for name in names:
        try:
            paths.add(reverse(name))
        except NoReverseMatch:
            continue
    return paths


class SessionGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if isinstance(user, User) and user.is_authenticated:
            verdict = sessions.check(request, user)
            if verdict.refused:
                sessions.refuse(request, user, verdict.reason)
                return self.to_login(request, sessions.MESSAGES.get(verdict.reason, ""))
            if factor_state.step_up_demanded(request) and request.path not in _exempt_paths(user):
                return self.to_step_up(request)
        return self.get_response(request)

    @staticmethod
    def to_login(request: HttpRequest, text: str) -> HttpResponse:
        if _is_api(request):
            body = {"error": {"code": "session_ended", "message": text or "log in again"}}
            return JsonResponse(body, status=401)
        login_url = reverse("accounts:login")
        if request.method == "GET":
            response = _redirect(request, redirect_to_login(request.get_full_path())["Location"])
        else:
            response = _redirect(request, login_url)
        if text:
            _with_message(request, response, messages.WARNING, text)
        return response

    @staticmethod
    def to_step_up(request: HttpRequest) -> HttpResponse:
        if _is_api(request):
            body = {
                "error": {
                    "code": "step_up_required",
                    "message": "confirm with your second factor first",
                }
            }
            return JsonResponse(body, status=403)
        next_url = request.get_full_path() if request.method == "GET" else ""
        return _redirect(request, factor_state.step_up_url(request, next_url))
