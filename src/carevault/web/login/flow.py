"""The one path every password login takes, whatever carried the credentials (the encrypted
login packet from the browser, the Python client): throttle check, password check, failure and
success accounting, second factor, session start.

Every failed password check looks the same to the caller (``LoginOutcome.FAILED``): an attacker
learns neither whether the account exists nor whether it is suspended.

**Paused sign-in** (issue 12). While sign-in is paused for the name or the address (the
account's back-off, its suspension, an address block), every attempt is answered
``LoginOutcome.PAUSED`` with when to try again, in words that fit a name that exists and one
that does not. Every paused path does the same work and writes the same state, whether the
password was right or wrong and whether the account exists: exactly one password hash (against
the account's hash, or a stand-in hash when there is no account; never ``authenticate()``,
whose work and side effects differ), one refusal counted for the address
(:func:`throttle.count_refused`), nothing else. So neither timing nor state names the right
password of a paused account.

The way back in is never closed to the owner of a second factor: a security officer (and the
owner of a suspended account) who has TOTP is sent to the second-factor step instead of being
refused, whatever the password was; the step accepts only the right password *and* a valid code
(:func:`factor_state.begin` remembers whether the password matched).

The flow takes the request: a login is Django's ``authenticate(request, ...)`` and
``login(request, user)``, and the second step is kept in the session. What it passes below
(the throttle, the audit log) is the request's :class:`~carevault.web.clientinfo.ClientInfo`.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import check_password, make_password
from django.http import HttpRequest
from django.utils.crypto import get_random_string

from carevault.web.accounts.models import User
from carevault.web.clientinfo import ClientInfo

from . import factor_state, sessions, throttle, twofactor


class LoginOutcome(enum.Enum):
    SUCCESS = "success"
    SECOND_FACTOR = "second-factor"
    FAILED = "failed"
    PAUSED = "paused"


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    # Seconds before another attempt can be tried, set only for PAUSED: decided before any
    # password check, so it tells nothing about the password.
    retry_after: int = 0


def paused_message(retry_after: int) -> str:
    """What a person whose sign-in is paused is told (the same for every name)."""
    minutes = max(1, -(-int(retry_after) // 60))
    unit = "minute" if minutes == 1 else "minutes"
    return (
        f"Sign-in is paused for this account name or this computer; try again in {minutes} {unit}."
    )


def attempt_password_login(request: HttpRequest, username: str, password: str) -> LoginResult:
    client = ClientInfo.from_request(request)
    address = client.address
    username = username.strip()[:150]
    decision = throttle.check(username, address)
    # One lookup on every path (usernames are unique regardless of case, as the throttle counts).
    account = User.objects.filter(username__iexact=username).first() if username else None
    if decision.blocked or (account is not None and account.is_suspended):
        reason = decision.reason if decision.blocked else throttle.REASON_SUSPENDED
        retry = decision.retry_after or throttle.suspension_retry_seconds()
        return _paused(request, account, password, client, reason, retry)
    user = authenticate(request, username=username, password=password)
    if not isinstance(user, User):
        throttle.record_failure(username, address, client=client)
        return LoginResult(LoginOutcome.FAILED)
    if user.has_totp:
        # The password was right; the second factor decides.
        factor_state.begin(request, user)
        return LoginResult(LoginOutcome.SECOND_FACTOR)
    throttle.record_success(user, address)
    sessions.complete_login(request, user)
    return LoginResult(LoginOutcome.SUCCESS)


def _paused(
    request: HttpRequest,
    account: User | None,
    password: str,
    client: ClientInfo,
    reason: str,
    retry_after: int,
) -> LoginResult:
    password_ok = password_matches(account, password)
    throttle.count_refused(client.address, reason, client=client)
    if account is not None and twofactor.paused_path_open(account, reason):
        factor_state.begin(request, account, password_ok=password_ok)
        return LoginResult(LoginOutcome.SECOND_FACTOR)
    return LoginResult(LoginOutcome.PAUSED, retry_after)


def password_matches(account: User | None, password: str) -> bool:
    """Exactly one password hash, whoever is asking: against the account's stored hash, or a
    stand-in of the preferred hasher when there is no account (or it has no usable password).
    No rehash on success, no ``last_login``, no signal: nothing that differs by the answer."""
    stored = account.password if account is not None and account.has_usable_password() else ""
    matches = check_password(password, stored or _stand_in(), setter=None)
    return bool(matches and stored)


_stand_ins: dict[str, str] = {}
_stand_in_lock = threading.Lock()


def _stand_in() -> str:
    """A hash of a random password made with the preferred hasher (once per process and
    hasher setting): checking against it costs what checking a real password costs."""
    preferred = str(settings.PASSWORD_HASHERS[0])
    with _stand_in_lock:
        found = _stand_ins.get(preferred)
        if found is None:
            found = make_password(get_random_string(32))
            _stand_ins[preferred] = found
    return found
