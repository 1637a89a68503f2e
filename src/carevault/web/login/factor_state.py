"""The second factor's state in the HTTP session: the views' side of :mod:`.twofactor`.

These helpers take the request because what they keep lives in its session, and logging a user
in (Django's ``login()``) needs it too; nothing below the views calls them.

* **The login's second step.** :func:`begin` (called by the login flow after a correct password)
  leaves, in a new session, who owes a second factor, since when, and for which client; the
  verify page accepts the code within :data:`PENDING_SECONDS`, at most
  :data:`~.twofactor.MAX_ATTEMPTS` tries, then :func:`finish` unlocks a suspended account (the
  owner proved both factors) and starts the session. Wrong codes count as failed logins for the
  throttle.
* **Wrong codes inside a session** (step-up, disabling, new recovery codes): counted per
  session; after MAX_ATTEMPTS of them the session ends (:func:`wrong_code_in_session`).
* **Step-up.** :func:`demand_step_up` marks a session (the security layer does, for a risky
  session); the session guard then sends every request to the step-up page until a fresh code
  is given. Users without TOTP are sent to enrol (which needs the password).
* **Enrolment.** Which pending secret this session was shown (:func:`shown_enrolment`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

from carevault.web.accounts.models import User
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo

from . import sessions, throttle, twofactor
from .twofactor import MAX_ATTEMPTS, SecondFactorFailed

PENDING_KEY = "cv_pending_user"
PENDING_AT_KEY = "cv_pending_at"
PENDING_BINDING_KEY = "cv_pending_binding"
PENDING_ATTEMPTS_KEY = "cv_pending_attempts"
# Whether the password step matched: a paused sign-in reaches the second step whatever the
# password was (flow.py), and only the right password with a valid code gets through.
PENDING_PASSWORD_OK_KEY = "cv_pending_password_ok"  # noqa: S105 - a session key name
PENDING_KEYS = (
    PENDING_KEY,
    PENDING_AT_KEY,
    PENDING_BINDING_KEY,
    PENDING_ATTEMPTS_KEY,
    PENDING_PASSWORD_OK_KEY,
)
PENDING_SECONDS = 5 * 60

STEP_UP_KEY = "cv_step_up"
# Which pending enrolment secret this session was shown (twofactor.enrolment_mark).
ENROL_KEY = "cv_totp_enrolment"
# Wrong codes given inside a logged-in session (step-up, disabling, new recovery codes).
ATTEMPTS_KEY = "cv_code_attempts"

F = TypeVar("F", bound=Callable[..., HttpResponse])


# -- enrolment -------------------------------------------------------------------------------------


def shown_enrolment(request: HttpRequest) -> str:
    """The mark of the pending secret this session was shown ("" for none)."""
    return str(request.session.get(ENROL_KEY) or "")


def remember_enrolment(request: HttpRequest, mark: str) -> None:
    if request.session.get(ENROL_KEY) != mark:
        request.session[ENROL_KEY] = mark


def enrolled(request: HttpRequest) -> None:
    """The factor is on (do_enable_totp): this session has just proven it."""
    request.session.pop(ENROL_KEY, None)
    sessions.mark_second_factor(request)
    clear_step_up(request)


# -- wrong codes -----------------------------------------------------------------------------------


def _count_wrong_code(request: HttpRequest, user: User, counter_key: str, purpose: str) -> int:
    """A wrong code: count it in the session, audit it, and count it as a failed login."""
    attempts = int(request.session.get(counter_key, 0)) + 1
    request.session[counter_key] = attempts
    twofactor.record_wrong_code(
        user, purpose=purpose, attempt=attempts, client=ClientInfo.from_request(request)
    )
    return attempts


def wrong_code_in_session(request: HttpRequest, user: User, purpose: str) -> None:
    """A wrong code in a logged-in session (step-up, disabling, new recovery codes): counted as a
    failed login, and after MAX_ATTEMPTS of them the session ends: whoever holds it does not
    hold the second factor, and must not get to guess on."""
    attempts = _count_wrong_code(request, user, ATTEMPTS_KEY, purpose)
    if attempts >= MAX_ATTEMPTS:
        sessions.refuse(request, user, sessions.TOO_MANY_CODES)


def right_code_in_session(request: HttpRequest) -> None:
    request.session.pop(ATTEMPTS_KEY, None)


def check_in_session(request: HttpRequest, user: User, code: str, *, purpose: str) -> str:
    """:func:`twofactor.verify_second_factor` for a logged-in session, its wrong codes counted
    (:func:`wrong_code_in_session`)."""
    try:
        method = twofactor.verify_second_factor(
            user, code, purpose=purpose, client=ClientInfo.from_request(request)
        )
    except SecondFactorFailed:
        wrong_code_in_session(request, user, purpose)
        raise
    right_code_in_session(request)
    return method


# -- the login's second step -----------------------------------------------------------------------


def begin(request: HttpRequest, user: User, *, password_ok: bool = True) -> None:
    """Remember, in a new session, who passed the password step and still owes a second factor,
    since when, and for which client (a pending state copied to another client is useless).

    The session is replaced by an empty, anonymous one (new key): whoever was logged in in this
    browser is not any more, so the verify page never finds a logged-in user standing in for the
    one who owes the code."""
    request.session.flush()
    request.user = AnonymousUser()
    request.session[PENDING_KEY] = user.pk
    request.session[PENDING_AT_KEY] = int(sessions.now())
    request.session[PENDING_BINDING_KEY] = sessions.client_binding(ClientInfo.from_request(request))
    request.session[PENDING_ATTEMPTS_KEY] = 0
    request.session[PENDING_PASSWORD_OK_KEY] = bool(password_ok)


def clear_pending(request: HttpRequest) -> None:
    for key in PENDING_KEYS:
        request.session.pop(key, None)


def pending_user(request: HttpRequest) -> User | None:
    """Who owes a second factor in this session, if the state is fresh and from this client."""
    session = request.session
    if any(key not in session for key in PENDING_KEYS):
        return None
    fresh = sessions.now() - float(session[PENDING_AT_KEY]) <= PENDING_SECONDS
    same_client = str(session[PENDING_BINDING_KEY]) == sessions.client_binding(
        ClientInfo.from_request(request)
    )
    user = User.objects.filter(pk=session[PENDING_KEY], is_active=True).first()
    if not (fresh and same_client and user is not None and user.has_totp):
        clear_pending(request)
        return None
    return user


def verify_pending(request: HttpRequest, user: User, code: str) -> None:
    """Check the login's second factor; a wrong code counts as a failed login (throttle). A
    right code after a wrong password (a paused sign-in) fails like a wrong code."""
    try:
        twofactor.verify_second_factor(
            user, code, purpose="login", client=ClientInfo.from_request(request)
        )
        if request.session.get(PENDING_PASSWORD_OK_KEY) is not True:
            raise SecondFactorFailed()
    except SecondFactorFailed:
        attempts = _count_wrong_code(request, user, PENDING_ATTEMPTS_KEY, "login")
        if attempts >= MAX_ATTEMPTS:
            clear_pending(request)
        raise


def finish(request: HttpRequest, user: User) -> None:
    """Both factors are proven: unlock a suspended account (its owner is here; lockout must
    not become a denial of service against them), then start the session."""
    clear_pending(request)
    client = ClientInfo.from_request(request)
    if user.is_suspended:
        throttle.lift_suspension(
            user, actor=user, reason="unlocked by its owner with the second factor", client=client
        )
    throttle.record_success(user, client.address)
    sessions.complete_login(request, user)
    sessions.mark_second_factor(request)


# -- step-up ---------------------------------------------------------------------------------------


def demand_step_up(target: HttpRequest | SessionBase, reason: str, *, actor: Any = None) -> None:
    """Require a fresh second factor before this session may do anything else.

    ``target`` is the current request, or any session (the security layer acting on a session it
    observed: :func:`sessions.session_store`), which is saved here."""
    session = target.session if isinstance(target, HttpRequest) else target
    session[STEP_UP_KEY] = {"reason": reason[:200], "at": int(sessions.now())}
    request = target if isinstance(target, HttpRequest) else None
    if request is None:
        session.save()
    elif actor is None:
        actor = request.user
    record(
        "session.step_up_demanded",
        actor=actor,
        outcome=Outcome.ALERT,
        client=ClientInfo.from_request(request),
        details={"reason": reason[:200]},
    )


def step_up_demanded(request: HttpRequest) -> bool:
    return STEP_UP_KEY in request.session


def step_up_reason(request: HttpRequest) -> str:
    demand = request.session.get(STEP_UP_KEY) or {}
    return str(demand.get("reason", "")) if isinstance(demand, dict) else ""


def clear_step_up(request: HttpRequest) -> None:
    request.session.pop(STEP_UP_KEY, None)


def complete_step_up(request: HttpRequest, user: User, code: str) -> None:
    """A fresh code lifts the demand (wrong codes: see :func:`check_in_session`)."""
    method = check_in_session(request, user, code, purpose="step-up")
    reason = step_up_reason(request)
    clear_step_up(request)
    sessions.mark_second_factor(request)
    record(
        "session.step_up_passed",
        actor=user,
        client=ClientInfo.from_request(request),
        details={"reason": reason, "method": method},
    )


def step_up_url(request: HttpRequest, next_url: str = "") -> str:
    user = request.user
    name = "account_security:step_up"
    if isinstance(user, User) and not user.has_totp:
        name = "account_security:totp_setup"
    url = reverse(name)
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


def require_recent_second_factor(max_age_minutes: int | None = None) -> Callable[[F], F]:
    """For sensitive views: the session must have proven the second factor within the last
    ``max_age_minutes`` (default settings.STEP_UP_MAX_AGE_MINUTES), else step-up first."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            limit = 60 * (
                max_age_minutes
                if max_age_minutes is not None
                else int(settings.STEP_UP_MAX_AGE_MINUTES)
            )
            proven = float(request.session.get(sessions.SECOND_FACTOR_AT_KEY, 0))
            if request.user.is_authenticated and sessions.now() - proven > limit:
                demand_step_up(request, f"sensitive action: {view.__name__}")
                return redirect(step_up_url(request, request.get_full_path()))
            return view(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
