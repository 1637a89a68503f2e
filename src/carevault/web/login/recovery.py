"""Account recovery: one-time recovery codes, and password reset by e-mail.

Recovery codes. Ten per enrolment, shown once. Only a keyed hash is stored (HMAC-SHA-256 under
a server secret, wrapped by the master key): the codes carry about 59 random bits, and a plain
SHA-256 of them could be searched offline by whoever copies the table; with the key it cannot.
A code is consumed by one conditional UPDATE, so it works exactly once even under concurrent use.

Password reset. The form takes a username or an e-mail address and always answers the same
("if an account matches, we sent a link"), whether or not anything matched, and takes about
the same time: the same lookups and a token computation happen on every path, and the answer
is held back to at least ``PASSWORD_RESET_MIN_SECONDS`` so that the time spent delivering a
message (SMTP) is not visible either. The link carries a Django password-reset token: it is
single-use (it is derived from the password hash and the last login, both of which change)
and expires after ``PASSWORD_RESET_TIMEOUT`` (30 minutes).

Who can reset by e-mail: patients, at the address on their (encrypted) patient record, found
through its blind index (:func:`carevault.web.clinic.reset_recipients.reset_recipients`,
registered with :func:`set_recipients`) or by their username. Staff accounts have no e-mail
address in CareVault: the form answers them the same way and sends nothing; a member of staff
who forgot their password asks a security officer (a reset by the officer is not part of this
release). Completing a reset revokes every session of the account and lifts a suspension
(recovery must work for the owner of an account under attack), and is audited as
``account.password_reset``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from hashlib import sha256

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.cache import cache
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from carevault.web.accounts.models import RecoveryCode, User
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo
from carevault.web.vault import service

RECOVERY_CODE_COUNT = 10
# 12 characters from 31 without look-alikes (no 0/o, 1/l/i): about 59 bits.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_GROUP = 4
_GROUPS = 3

RESETS_PER_HOUR = 3  # messages to one account
RESET_REQUESTS_PER_ADDRESS = 20  # requests from one client address, per hour


# -- recovery codes --------------------------------------------------------------------------------


def _normalize(code: str) -> str:
    return "".join(ch for ch in str(code or "").lower() if ch.isalnum())


def _hash(code: str) -> str:
    key = service.service_secret("recovery-codes").expose()
    return hmac.new(key, _normalize(code).encode(), sha256).hexdigest()


def _new_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(_GROUP * _GROUPS))
    return "-".join(raw[i : i + _GROUP] for i in range(0, len(raw), _GROUP))


@transaction.atomic
def issue_recovery_codes(user: User) -> list[str]:
    """Replace the user's recovery codes with new ones; the clear codes are returned once."""
    codes = [_new_code() for _ in range(RECOVERY_CODE_COUNT)]
    RecoveryCode.objects.filter(user=user).delete()
    RecoveryCode.objects.bulk_create(RecoveryCode(user=user, code_hash=_hash(c)) for c in codes)
    return codes


def use_recovery_code(user: User, code: str) -> bool:
    """Consume the code if it is one of the user's unused codes."""
    if len(_normalize(code)) != _GROUP * _GROUPS:
        return False
    used = RecoveryCode.objects.filter(
        user=user, code_hash=_hash(code), used_at__isnull=True
    ).update(used_at=timezone.now())
    return used == 1


def remaining_recovery_codes(user: User) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()


# -- password reset --------------------------------------------------------------------------------


class ResetTokenGenerator(PasswordResetTokenGenerator):
    key_salt = "carevault.web.login.recovery.ResetTokenGenerator"


tokens = ResetTokenGenerator()


def reset_link(user: User, *, site_url: str) -> str:
    """The link for ``user``, on ``site_url`` (the configured site address; the view builds it
    from the request only when none is configured: see security_views)."""
    path = reverse(
        "account_security:password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": tokens.make_token(user),
        },
    )
    return f"{site_url}{path}"


def user_from_link(uidb64: str, token: str) -> User | None:
    """The user a reset link is for, if its token is valid now (unused and not expired)."""
    try:
        pk = int(force_str(urlsafe_base64_decode(uidb64)))
    except (ValueError, TypeError, OverflowError):
        pk = None
    user = User.objects.filter(pk=pk, is_active=True).first() if pk is not None else None
    if user is None:
        # The same token work as for a real account.
        tokens.check_token(stand_in(), token)
        return None
    return user if tokens.check_token(user, token) else None


def stand_in() -> User:
    """A user that exists nowhere, to do the work a real account would cost."""
    user = User(pk=0, username="password-reset", last_login=None)
    user.set_unusable_password()
    return user


# Who receives a reset link for an identifier: (account, e-mail address) pairs. Only patients
# have an address in CareVault, on their encrypted patient record, so the clinic (which sits
# above this app) registers the lookup at start-up (ClinicConfig.ready); until it does, no
# identifier has a recipient (the form still answers the same and does the same work).
Recipients = Callable[[str], list[tuple[User, str]]]
_recipients_lookup: Recipients | None = None


def set_recipients(lookup: Recipients | None) -> None:
    """Register how an identifier (a username or an e-mail address) finds its recipients."""
    global _recipients_lookup
    _recipients_lookup = lookup


def recipients(identifier: str) -> list[tuple[User, str]]:
    """(account, e-mail address) pairs the identifier designates; empty when none can be sent."""
    identifier = identifier.strip()[:254]
    if not identifier or _recipients_lookup is None:
        return []
    found = _recipients_lookup(identifier)
    return [(user, email) for user, email in found if user.is_active and email]


def within_rate(user: User) -> bool:
    """At most RESETS_PER_HOUR messages per account: the form must not become a way to flood a
    patient's mailbox. Excess requests get the same answer and send nothing."""
    key = f"cv:pwreset:{user.pk}"
    cache.add(key, 0, 3600)
    try:
        return int(cache.incr(key)) <= RESETS_PER_HOUR
    except ValueError:
        return True


def message(user: User, email: str, *, site_url: str) -> EmailMessage:
    body = render_to_string(
        "account_security/password_reset_email.txt",
        {
            "username": user.username,
            "link": reset_link(user, site_url=site_url),
            "minutes": int(settings.PASSWORD_RESET_TIMEOUT) // 60,
        },
    )
    return EmailMessage(
        subject="Reset your CareVault password",
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[email],
    )


def address_within_rate(client: ClientInfo) -> bool:
    """At most RESET_REQUESTS_PER_ADDRESS requests per hour from one client address: beyond
    that, the form answers at once and does nothing (the same answer for every identifier, so
    it tells nothing; and a flood cannot hold workers in the minimum answer time)."""
    address = client.address
    key = "cv:pwreset:addr:" + salted_hmac("carevault.pwreset", address).hexdigest()[:32]
    cache.add(key, 0, 3600)
    try:
        count = int(cache.incr(key))
    except ValueError:
        return True
    if count == RESET_REQUESTS_PER_ADDRESS + 1:
        record(
            "account.password_reset_throttled",
            outcome=Outcome.ALERT,
            client=client,
            details={"address": address, "limit_per_hour": RESET_REQUESTS_PER_ADDRESS},
        )
    return count <= RESET_REQUESTS_PER_ADDRESS
