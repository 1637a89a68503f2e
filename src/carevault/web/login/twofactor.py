"""The TOTP second factor below the views: the wrapped secret, enrolment, checking a code.

* **Enrolment.** A 20-byte secret is generated and stored wrapped by the master key, bound to the
  user (``{"purpose": "totp", "user": <pk>}``), unconfirmed. The page shows it as base32 and as a
  QR code; the factor is on only once the user types a code from their app *and* their password
  (:func:`carevault.web.login.actions.do_enable_totp`). The password matters: without it,
  whoever holds a stolen session could put their own authenticator on the account and lock the
  owner out (the owner's next login would ask for a code only the thief has).
* **Codes.** RFC 6238 (see :mod:`carevault.crypto.otp`), one step of clock drift either way. A code
  is accepted only for a time step later than ``User.totp_last_step``, and the step is advanced
  by one conditional UPDATE, so a code is good once even when two requests race with it. A
  recovery code (:mod:`.recovery`) can stand in for the TOTP code, once.

Nothing here takes a request: the client is a :class:`~carevault.web.clientinfo.ClientInfo`.
What the second factor keeps in the HTTP session (the login's pending second step, step-up,
wrong codes counted per session, which enrolment secret a session was shown) is the views'
side: :mod:`.factor_state`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import segno
from django.core.cache import cache
from django.db import transaction

from carevault.crypto import SecretBytes
from carevault.crypto.otp import (
    TOTP_DIGITS,
    InvalidCodeError,
    generate_totp_secret,
    normalize_code,
    provisioning_uri,
    verify_totp,
)
from carevault.web.accounts.models import Role, User
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo
from carevault.web.errors import ActionError, NotAllowed, ValidationFailed
from carevault.web.vault import service

from . import recovery, sessions, throttle

# Paused sign-ins sent to the second step, per account and hour: each allows MAX_ATTEMPTS
# codes, so this bounds code guessing while sign-in is paused (the command line stays open).
PAUSED_SECOND_STEPS_PER_HOUR = 10

# Wrong codes allowed per pending login or per step-up before the user must start over (a new
# password login, which the throttle guards) or is logged out.
MAX_ATTEMPTS = 5

ISSUER = "CareVault"


class SecondFactorFailed(ActionError):
    """The code (or recovery code) was wrong, old, reused or malformed: one message for all."""

    code = "invalid_code"
    status = 400

    def __init__(self) -> None:
        super().__init__("That code is not valid. Try the current code from your app.")


# -- the wrapped secret ----------------------------------------------------------------------------


def _context(user: User) -> dict[str, str]:
    return {"purpose": "totp", "user": str(user.pk)}


def secret_of(user: User) -> SecretBytes:
    return SecretBytes(service.unwrap_current(bytes(user.totp_wrapped), _context(user)))


# -- enrolment -------------------------------------------------------------------------------------


def enrolment_mark(wrapped: bytes) -> str:
    """Which pending secret a session was shown (a digest of its wrapped form)."""
    return hashlib.sha256(bytes(wrapped)).hexdigest()


@dataclass(frozen=True)
class Enrolment:
    """An unconfirmed secret to show, and the mark of it the session must remember."""

    secret: SecretBytes
    mark: str


@transaction.atomic
def start_enrolment(user: User, *, shown: str) -> Enrolment:
    """The unconfirmed secret to show; ``shown`` is the mark of the secret this session was
    shown already ("" for none).

    The pending secret is reused only for the session that was shown it (a reload must show
    the QR code the user may have scanned already); any other session gets a new one, which
    replaces it. Otherwise a secret shown to a stolen session would still be pending when the
    owner enrols later, and the thief would hold the owner's second factor."""
    locked = User.objects.select_for_update().get(pk=user.pk)
    if locked.has_totp:
        raise NotAllowed("two-factor authentication is already on")
    pending = bytes(locked.totp_wrapped)
    if pending and shown == enrolment_mark(pending):
        user.totp_wrapped = pending
        return Enrolment(secret_of(locked), shown)
    secret = generate_totp_secret()
    locked.totp_wrapped = service.master().wrap(secret.expose(), _context(locked))
    locked.save(update_fields=["totp_wrapped"])
    user.totp_wrapped = locked.totp_wrapped
    return Enrolment(secret, enrolment_mark(locked.totp_wrapped))


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


def check_password(user: User, password: str, *, client: ClientInfo) -> None:
    """Re-authentication inside a session (enrolment): throttled like a login, since a stolen
    session must not become an unthrottled password oracle."""
    if throttle.check(user.username, client.address).blocked:
        raise ValidationFailed("Too many attempts. Wait a while and try again.", field="password")
    if not user.check_password(password):
        throttle.record_failure(user.username, client.address, client=client)
        raise ValidationFailed("That password is not correct.", field="password")


# -- checking a code -------------------------------------------------------------------------------


def verify_second_factor(user: User, code: str, *, purpose: str, client: ClientInfo) -> str:
    """Accept a TOTP code (once: the time step must be newer than the last one used) or an
    unused recovery code. Returns which ("totp" or "recovery"); raises SecondFactorFailed."""
    if not user.has_totp:
        raise SecondFactorFailed()
    cleaned = normalize_code(code)
    if cleaned.isdigit() and len(cleaned) == TOTP_DIGITS:
        try:
            step = verify_totp(secret_of(user), cleaned, at=sessions.now(), after_step=0)
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
                client=client,
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
            client=client,
            details={"purpose": purpose, "remaining": recovery.remaining_recovery_codes(user)},
        )
        return "recovery"
    raise SecondFactorFailed()


def record_wrong_code(user: User, *, purpose: str, attempt: int, client: ClientInfo) -> None:
    """A wrong code (the ``attempt``-th of its kind): audited, and counted as a failed login."""
    record(
        "auth.second_factor_failed",
        actor=user,
        outcome=Outcome.FAILED,
        target=user,
        client=client,
        details={"purpose": purpose, "attempt": attempt},
    )
    throttle.record_failure(user.username, client.address, client=client)


# -- paused sign-in --------------------------------------------------------------------------------


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
