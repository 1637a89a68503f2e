"""Logins, logouts and failed logins go to the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from carevault.web.accounts.models import User
from carevault.web.accounts.names import username_hash
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo


@receiver(user_logged_in)
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    record("auth.login", actor=user, client=ClientInfo.from_request(request))


@receiver(user_logged_out)
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record("auth.logout", actor=user, client=ClientInfo.from_request(request))


@receiver(user_login_failed)
def _login_failed(sender: Any, credentials: Any, request: Any = None, **kwargs: Any) -> None:
    # Never the attempted text (people type e-mail addresses and surnames there): a keyed hash
    # of it (names.py), and the account as the entry's target when one has that name.
    username = str(credentials.get("username", ""))[:150].strip()
    account = User.objects.filter(username__iexact=username).first() if username else None
    record(
        "auth.login_failed",
        outcome=Outcome.FAILED,
        target=account,
        client=ClientInfo.from_request(request),
        details={"username_hash": username_hash(username)},
    )
