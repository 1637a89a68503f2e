"""The one path every password login takes, whatever carried the credentials (the encrypted
login packet from the browser, the Python client): throttle check, password check, failure and
success accounting, second factor, session start.

Every failure looks the same to the caller (``LoginOutcome.FAILED``): an attacker learns neither
whether the account exists, nor whether it is suspended, nor whether the password was right.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.http import HttpRequest

from carevault.web.audit.log import Outcome, record
from carevault.web.net import client_address

from . import sessions, throttle, twofactor
from .models import User


class LoginOutcome(enum.Enum):
    SUCCESS = "success"
    SECOND_FACTOR = "second-factor"
    FAILED = "failed"


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    # Seconds before another attempt can succeed, set only when the throttle refused the attempt
    # before any password check: a value after a password check would tell a guesser whether
    # the password was right (a wrong one earns a back-off, a right one on a suspended account
    # would not).
    retry_after: int = 0


def attempt_password_login(request: HttpRequest, username: str, password: str) -> LoginResult:
    address = client_address(request)
    username = username.strip()[:150]
    decision = throttle.check(username, address)
    if decision.blocked:
        record(
            "auth.throttled",
            outcome=Outcome.DENIED,
            request=request,
            details={"username": username, "reason": decision.reason},
        )
        return LoginResult(LoginOutcome.FAILED, decision.retry_after)
    user = authenticate(request, username=username, password=password)
    if not isinstance(user, User):
        throttle.record_failure(username, address, request=request)
        return LoginResult(LoginOutcome.FAILED)
    if user.has_totp:
        # The password was right; the second factor decides. A suspended account whose owner
        # holds the second factor is unlocked by it (twofactor.finish), so lockout cannot be
        # turned against the real user.
        twofactor.begin(request, user)
        return LoginResult(LoginOutcome.SECOND_FACTOR)
    if user.is_suspended:
        record(
            "auth.login_refused",
            actor=user,
            outcome=Outcome.DENIED,
            request=request,
            details={"reason": "suspended"},
        )
        return LoginResult(LoginOutcome.FAILED)
    throttle.record_success(user, address)
    sessions.complete_login(request, user)
    return LoginResult(LoginOutcome.SUCCESS)
