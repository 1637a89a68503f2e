"""The login app's writes: every one atomic, taking the acting user and a
:class:`~carevault.web.clientinfo.ClientInfo` (never a request), and writing its audit row.

The views build the ClientInfo once (``ClientInfo.from_request``) and keep what lives in the
HTTP session to themselves (:mod:`.factor_state`, :mod:`.sessions`); the command line, the
worker and the attack lab call these with a ClientInfo of their own (or
:data:`~carevault.web.clientinfo.NO_CLIENT`).

A code check (:func:`twofactor.verify_second_factor`) runs before the write's transaction: a
replayed code's alert row must stay written when the action is refused.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from carevault.crypto.otp import InvalidCodeError, verify_totp
from carevault.web.accounts.actions import require_officer
from carevault.web.accounts.models import RecoveryCode, User
from carevault.web.accounts.passwords import set_validated_password
from carevault.web.audit.log import record
from carevault.web.clientinfo import ClientInfo
from carevault.web.errors import NotAllowed, ValidationFailed

from . import recovery, sessions, throttle, twofactor
from .twofactor import SecondFactorFailed

# -- the second factor -----------------------------------------------------------------------------


def do_enable_totp(
    acting_user: User, *, code: str, password: str, shown: str, client: ClientInfo
) -> list[str]:
    """Turn the factor on once the user proves they hold the secret (a code) and the account
    (the password); ``shown`` is the mark of the pending secret the user's session was shown
    (a secret set up again elsewhere is refused). Returns the recovery codes, in the clear this
    one time."""
    twofactor.check_password(acting_user, password, client=client)
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=acting_user.pk)
        if locked.has_totp:
            raise NotAllowed("two-factor authentication is already on")
        pending = bytes(locked.totp_wrapped)
        if not pending or shown != twofactor.enrolment_mark(pending):
            raise ValidationFailed(
                "The set-up was started again elsewhere: scan the new code.", field="code"
            )
        try:
            step = verify_totp(twofactor.secret_of(locked), code, at=sessions.now())
        except InvalidCodeError:
            raise SecondFactorFailed() from None
        locked.totp_confirmed_at = timezone.now()
        locked.totp_last_step = step
        locked.save(update_fields=["totp_confirmed_at", "totp_last_step"])
        codes = recovery.issue_recovery_codes(locked)
        record("account.totp_enabled", actor=locked, target=locked, client=client)
    acting_user.totp_confirmed_at, acting_user.totp_last_step = locked.totp_confirmed_at, step
    return codes


def do_disable_totp(acting_user: User, *, code: str, client: ClientInfo) -> None:
    """Turn the factor off: needs a current code (or a recovery code), not just the session.
    A wrong code raises SecondFactorFailed (the view counts it against the session)."""
    twofactor.verify_second_factor(acting_user, code, purpose="disable", client=client)
    with transaction.atomic():
        User.objects.filter(pk=acting_user.pk).update(
            totp_wrapped=b"", totp_confirmed_at=None, totp_last_step=0
        )
        RecoveryCode.objects.filter(user=acting_user).delete()
        record("account.totp_disabled", actor=acting_user, target=acting_user, client=client)
    acting_user.totp_wrapped, acting_user.totp_confirmed_at, acting_user.totp_last_step = (
        b"",
        None,
        0,
    )


def do_regenerate_recovery_codes(acting_user: User, *, code: str, client: ClientInfo) -> list[str]:
    """New recovery codes (the old ones stop working); needs a current code (a wrong one raises
    SecondFactorFailed)."""
    twofactor.verify_second_factor(acting_user, code, purpose="recovery-codes", client=client)
    with transaction.atomic():
        codes = recovery.issue_recovery_codes(acting_user)
        record(
            "account.recovery_codes_issued", actor=acting_user, target=acting_user, client=client
        )
    return codes


# -- the throttle, by a security officer --------------------------------------------------------


def do_lift_suspension(acting_user: User, user: User, *, client: ClientInfo) -> bool:
    """The officer lifts an automatic suspension (audited); False if it was not suspended."""
    require_officer(acting_user)
    return throttle.lift_suspension(
        user, actor=acting_user, reason="lifted by a security officer", client=client
    )


def do_unblock_address(acting_user: User, address: str, *, client: ClientInfo) -> bool:
    """The officer ends a temporary block of a client address (audited); False if it was not
    blocked."""
    require_officer(acting_user)
    return throttle.unblock_address(address, actor=acting_user, client=client)


# -- sessions --------------------------------------------------------------------------------------


@transaction.atomic
def do_revoke_all_sessions(
    acting_user: Any, user: User, *, reason: str, client: ClientInfo | None = None
) -> None:
    """End every session of ``user`` at once, on every server: their stamped epoch no longer
    matches (sessions.check). One UPDATE (F() expression), so concurrent revocations never lose
    a bump. ``acting_user`` is None when the security layer acts on its own."""
    User.objects.filter(pk=user.pk).update(session_epoch=F("session_epoch") + 1)
    user.refresh_from_db(fields=["session_epoch"])
    record(
        "session.revoke_all",
        actor=acting_user,
        target=user,
        client=client,
        details={"username": user.username, "reason": reason[:200]},
    )


# -- password reset --------------------------------------------------------------------------------


def do_request_password_reset(identifier: str, *, site_url: str, client: ClientInfo) -> None:
    """Send a reset link (on ``site_url``) to the account(s) the identifier designates, if any.
    Says nothing about the outcome, and takes at least PASSWORD_RESET_MIN_SECONDS either way.
    Anonymous: whoever asks is not logged in (the rows name the account as their target)."""
    if not recovery.address_within_rate(client):
        return
    started = time.monotonic()
    sent = 0
    for user, email in recovery.recipients(identifier):
        if not recovery.within_rate(user):
            continue
        recovery.message(user, email, site_url=site_url).send()
        sent += 1
        record(
            "account.password_reset_requested",
            actor=None,
            target=user,
            client=client,
            details={"username": user.username, "channel": "email"},
        )
    if not sent:
        # The work a real message costs (token, link, rendering), thrown away.
        recovery.message(recovery.stand_in(), "nobody@invalid", site_url=site_url)
    remaining = float(settings.PASSWORD_RESET_MIN_SECONDS) - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)


def do_reset_password(acting_user: User, *, password: str, client: ClientInfo) -> None:
    """The owner of a valid reset link (``acting_user``, from recovery.user_from_link) sets a
    new password (Django's validators): every session ends, a suspension is lifted."""
    user = acting_user
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        set_validated_password(locked, password)
        locked.save(update_fields=["password"])
        do_revoke_all_sessions(locked, locked, reason="password reset", client=client)
        record(
            "account.password_reset",
            actor=locked,
            target=locked,
            client=client,
            details={"username": locked.username, "sessions_revoked": True},
        )
        if locked.is_suspended:
            throttle.lift_suspension(
                locked,
                actor=locked,
                reason="unlocked by its owner with a password reset",
                client=client,
            )
    user.password, user.session_epoch = locked.password, locked.session_epoch
    user.suspended_at = None
