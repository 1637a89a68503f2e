"""The TOTP second factor: enrolment, the login's second step, step-up, disabling.

* **Enrolment.** A 20-byte secret is generated and stored wrapped by the master key, bound to the
  user (``{"purpose": "totp", "user": <pk>}``), unconfirmed. The page shows it as base32 and as a
  QR code; the factor is on only once the user types a code from their app *and* their password
  (:func:`confirm_enrolment`). The password matters: without it, whoever holds a stolen session
  could put their own authenticator on the account and lock the owner out (the owner's next
  login would ask for a code only the thief has).
* **Codes.** RFC 6238 (see :mod:`carevault.crypto.otp`), one step of clock drift either way. A code
  is accepted only for a time step later than ``User.totp_last_step``, and the step is advanced
  by one conditional UPDATE, so a code is good once even when two requests race with it. A
  recovery code (:mod:`.recovery`) can stand in for the TOTP code, once.
* **Login.** :func:`begin` (called by the login flow after a correct password) leaves, in a new
  session, who owes a second factor, since when, and for which client; the verify page accepts
  the code within :data:`PENDING_SECONDS`, at most :data:`MAX_ATTEMPTS` tries, then
  :func:`finish` unlocks a suspended account (the owner proved both factors) and starts the
  session. Wrong codes count as failed logins for the throttle.
* **Step-up.** :func:`demand_step_up` marks a session (the security layer does, for a risky
  session); the session guard then sends every request to the step-up page until a fresh code is
  given. Users without TOTP are sent to enrol (which needs the password).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import segno
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from carevault.crypto import SecretBytes
from carevault.crypto.otp import (
    TOTP_DIGITS,
    InvalidCodeError,
    generate_totp_secret,
    normalize_code,
    provisioning_uri,
    verify_totp,
)
from carevault.web.accounts.models import RecoveryCode, Role, User
from carevault.web.audit.log import Outcome, record
from carevault.web.errors import ActionError, NotAllowed, ValidationFailed
from carevault.web.net import client_address
from carevault.web.vault import service

from . import recovery, sessions, throttle

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
# Paused sign-ins sent to the second step, per account and hour: each allows MAX_ATTEMPTS
# codes, so this bounds code guessing while sign-in is paused (the command line stays open).
PAUSED_SECOND_STEPS_PER_HOUR = 10

STEP_UP_KEY = "cv_step_up"
# Which pending enrolment secret this session was shown (a digest of its wrapped form).
ENROL_KEY = "cv_totp_enrolment"
# Wrong codes given inside a logged-in session (step-up, disabling, new recovery codes).
ATTEMPTS_KEY = "cv_code_attempts"

# Wrong codes allowed per pending login or per step-up before the user must start over (a new
# password login, which the throttle guards) or is logged out.
MAX_ATTEMPTS = 5

ISSUER = "CareVault"

F = TypeVar("F", bound=Callable[..., HttpResponse])


class SecondFactorFailed(ActionError):
    """The code (or recovery code) was wrong, old, reused or malformed: one message for all."""

    code = "invalid_code"
    status = 400

    def __init__(self) -> None:
        super().__init__("That code is not valid. Try the current code from your app.")


# -- the wrapped secret ----------------------------------------------------------------------------


def _context(user: User) -> dict[str, str]:
    return {"purpose": "totp", "user": str(user.pk)}


def _secret(user: User) -> SecretBytes:
    return SecretBytes(service.unwrap_current(bytes(user.totp_wrapped), _context(user)))


# -- enrolment -------------------------------------------------------------------------------------


def _enrolment_mark(wrapped: bytes) -> str:
    return hashlib.sha256(bytes(wrapped)).hexdigest()


@transaction.atomic
def start_enrolment(request: HttpRequest, user: User) -> SecretBytes:
    """The unconfirmed secret to show.

    The pending secret is reused only for the session that was shown it (a reload must show
    the QR code the user may have scanned already); any other session gets a new one, which
    replaces it. Otherwise a secret shown to a stolen session would still be pending when the
    owner enrols later, and the thief would hold the owner's second factor."""
    locked = User.objects.select_for_update().get(pk=user.pk)
    if locked.has_totp:
        raise NotAllowed("two-factor authentication is already on")
    pending = bytes(locked.totp_wrapped)
    if pending and request.session.get(ENROL_KEY) == _enrolment_mark(pending):
        user.totp_wrapped = pending
        return _secret(locked)
    secret = generate_totp_secret()
    locked.totp_wrapped = service.master().wrap(secret.expose(), _context(locked))
    locked.save(update_fields=["totp_wrapped"])
    user.totp_wrapped = locked.totp_wrapped
    request.session[ENROL_KEY] = _enrolment_mark(locked.totp_wrapped)
    return secret


def enrolment_uri(user: User, secret: SecretBytes) -> str:
    return provisioning_uri(secret, account=user.username, issuer=ISSUER)


def qr_svg(uri: str) -> str:
    """The QR code as inline SVG markup. segno writes colours as attributes (fill, stroke),
    never as ``style=""``, which the Content-Security-Policy (style-src 'self') would block."""
    return str(
        segno.make(uri, error="m").svg_inline(
            scale=5, light="#fff", dark="#000", svgclass="totp-qr", lineclass=None
        )
    )


def check_password(request: HttpRequest, user: User, password: str) -> None:
    """Re-authentication inside a session (enrolment): throttled like a login, since a stolen
    session must not become an unthrottled password oracle."""
    address = client_address(request)
    if throttle.check(user.username, address).blocked:
        raise ValidationFailed("Too many attempts. Wait a while and try again.", field="password")
    if not user.check_password(password):
        throttle.record_failure(user.username, address, request=request)
        raise ValidationFailed("That password is not correct.", field="password")


def confirm_enrolment(request: HttpRequest, user: User, code: str, password: str) -> list[str]:
    """Turn the factor on once the user proves they hold the secret (a code) and the account
    (the password). Returns the recovery codes, in the clear this one time."""
    check_password(request, user, password)
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.has_totp:
            raise NotAllowed("two-factor authentication is already on")
        pending = bytes(locked.totp_wrapped)
        if not pending or request.session.get(ENROL_KEY) != _enrolment_mark(pending):
            raise ValidationFailed(
                "The set-up was started again elsewhere: scan the new code.", field="code"
            )
        try:
            step = verify_totp(_secret(locked), code, at=sessions.now())
        except InvalidCodeError:
            raise SecondFactorFailed() from None
        locked.totp_confirmed_at = timezone.now()
        locked.totp_last_step = step
        locked.save(update_fields=["totp_confirmed_at", "totp_last_step"])
        codes = recovery.issue_recovery_codes(locked)
        record("account.totp_enabled", actor=locked, target=locked, request=request)
    user.totp_confirmed_at, user.totp_last_step = locked.totp_confirmed_at, step
    request.session.pop(ENROL_KEY, None)
    sessions.mark_second_factor(request)
    clear_step_up(request)
    return codes


def disable(request: HttpRequest, user: User, code: str) -> None:
    """Turn the factor off: needs a current code (or a recovery code), not just the session."""
    check_in_session(request, user, code, purpose="disable")
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(
            totp_wrapped=b"", totp_confirmed_at=None, totp_last_step=0
        )
        RecoveryCode.objects.filter(user=user).delete()
        record("account.totp_disabled", actor=user, target=user, request=request)
    user.totp_wrapped, user.totp_confirmed_at, user.totp_last_step = b"", None, 0


def regenerate_recovery_codes(request: HttpRequest, user: User, code: str) -> list[str]:
    """New recovery codes (the old ones stop working); needs a current code."""
    check_in_session(request, user, code, purpose="recovery-codes")
    with transaction.atomic():
        codes = recovery.issue_recovery_codes(user)
        record("account.recovery_codes_issued", actor=user, target=user, request=request)
    return codes


# -- checking a code -------------------------------------------------------------------------------


def verify_second_factor(request: HttpRequest, user: User, code: str, *, purpose: str) -> str:
    """Accept a TOTP code (once: the time step must be newer than the last one used) or an
    unused recovery code. Returns which ("totp" or "recovery"); raises SecondFactorFailed."""
    if not user.has_totp:
        raise SecondFactorFailed()
    cleaned = normalize_code(code)
    if cleaned.isdigit() and len(cleaned) == TOTP_DIGITS:
        try:
            step = verify_totp(_secret(user), cleaned, at=sessions.now(), after_step=0)
        except InvalidCodeError:
            raise SecondFactorFailed() from None
        # Compare-and-set in one statement: of two requests racing with the same code, or a
        # code replayed within its window, only the first moves the step forward.
        advanced = User.objects.filter(pk=user.pk, totp_last_step__lt=step).update(
            totp_last_step=step
        )
        if not advanced:
            record(
                "auth.totp_replay",
                actor=user,
                outcome=Outcome.ALERT,
                target=user,
                request=request,
                details={"purpose": purpose},
            )
            raise SecondFactorFailed()
        user.totp_last_step = step
        return "totp"
    if recovery.use_recovery_code(user, cleaned):
        record(
            "account.recovery_code_used",
            actor=user,
            target=user,
            request=request,
            details={"purpose": purpose, "remaining": recovery.remaining_recovery_codes(user)},
        )
        return "recovery"
    raise SecondFactorFailed()


def _count_wrong_code(request: HttpRequest, user: User, counter_key: str, purpose: str) -> int:
    """A wrong code: count it in the session, audit it, and count it as a failed login."""
    attempts = int(request.session.get(counter_key, 0)) + 1
    request.session[counter_key] = attempts
    record(
        "auth.second_factor_failed",
        actor=user,
        outcome=Outcome.FAILED,
        target=user,
        request=request,
        details={"purpose": purpose, "attempt": attempts},
    )
    throttle.record_failure(user.username, client_address(request), request=request)
    return attempts


def check_in_session(request: HttpRequest, user: User, code: str, *, purpose: str) -> str:
    """:func:`verify_second_factor` for a logged-in session (step-up, disabling, new recovery
    codes). Wrong codes count as failed logins, and after MAX_ATTEMPTS of them the session ends:
    whoever holds it does not hold the second factor, and must not get to guess on."""
    try:
        method = verify_second_factor(request, user, code, purpose=purpose)
    except SecondFactorFailed:
        attempts = _count_wrong_code(request, user, ATTEMPTS_KEY, purpose)
        if attempts >= MAX_ATTEMPTS:
            sessions.refuse(request, user, sessions.TOO_MANY_CODES)
        raise
    request.session.pop(ATTEMPTS_KEY, None)
    return method


# -- the login's second step -----------------------------------------------------------------------


def paused_path_open(user: User, reason: str) -> bool:
    """May a paused sign-in for ``user`` go to the second-factor step instead of being refused?
    For a security officer with TOTP (blocked address, back-off or suspension: the officer is
    never locked out of the way back in), and for the owner of a suspended account with TOTP
    (the second factor lifts the suspension). At most PAUSED_SECOND_STEPS_PER_HOUR times an
    hour per account."""
    if not (user.has_totp and user.is_active):
        return False
    if not (user.role == Role.ADMIN or user.is_suspended or reason == throttle.REASON_SUSPENDED):
        return False
    key = (
        f"cv:login:paused2fa:{throttle.account_digest(user.username)}:{int(sessions.now()) // 3600}"
    )
    cache.add(key, 0, 3600 + 60)
    try:
        used = int(cache.incr(key))
    except ValueError:
        return False
    return used <= PAUSED_SECOND_STEPS_PER_HOUR


def begin(request: HttpRequest, user: User, *, password_ok: bool = True) -> None:
    """Remember, in a new session, who passed the password step and still owes a second factor,
    since when, and for which client (a pending state copied to another client is useless).

    The session is replaced by an empty, anonymous one (new key): whoever was logged in in this
    browser is not any more, so the verify page never finds a logged-in user standing in for the
    one who owes the code."""
    from django.contrib.auth.models import AnonymousUser

    request.session.flush()
    request.user = AnonymousUser()
    request.session[PENDING_KEY] = user.pk
    request.session[PENDING_AT_KEY] = int(sessions.now())
    request.session[PENDING_BINDING_KEY] = sessions.client_binding(request)
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
    same_client = str(session[PENDING_BINDING_KEY]) == sessions.client_binding(request)
    user = User.objects.filter(pk=session[PENDING_KEY], is_active=True).first()
    if not (fresh and same_client and user is not None and user.has_totp):
        clear_pending(request)
        return None
    return user


def verify_pending(request: HttpRequest, user: User, code: str) -> None:
    """Check the login's second factor; a wrong code counts as a failed login (throttle). A
    right code after a wrong password (a paused sign-in) fails like a wrong code."""
    try:
        verify_second_factor(request, user, code, purpose="login")
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
    if user.is_suspended:
        throttle.lift_suspension(
            user, actor=user, reason="unlocked by its owner with the second factor", request=request
        )
    throttle.record_success(user, client_address(request))
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
        request=request,
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
        request=request,
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
