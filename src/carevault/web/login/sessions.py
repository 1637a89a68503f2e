"""Starting, guarding and ending sessions.

A session is started by :func:`complete_login` (Django's ``login()``, which rotates the session
key, so a key planted before login is worthless after it). At that moment the session records:

* the user's ``session_epoch``: bumping it in the database ends every session of the user at
  once (:func:`carevault.web.login.actions.do_revoke_all_sessions`: "log out everywhere", the
  security layer's response);
* the login time and the last-seen time (absolute and idle timeouts, HIPAA automatic logoff);
* a client binding: an HMAC, under a server secret, of the client's User-Agent and address. A
  session cookie copied to another client (another browser, another address) does not match it
  and is refused. The HMAC keeps the values themselves out of the session store.

:class:`~carevault.web.login.middleware.SessionGuardMiddleware` checks all of this on every
request (:func:`check`).

Which sessions are guarded: every session started by Django's ``login()`` is stamped here,
through the ``user_logged_in`` signal, with the request that logged in; so every login path (the
encrypted login packet, the Python client, anything added later) is bound to the client that
authenticated, without having to remember to call a second function. A logged-in session that
carries *no* stamp was not started by a login request of this server: it was written by something
else (``Client.force_login`` in tests builds a request-less session; a session row forged in the
database; a session from before this code was deployed). Such a session is refused (reason
``unbound``), never silently bound to whoever presents it first: binding on first use would hand a
stolen unbound cookie to the thief. The web tests therefore log in through
:func:`complete_login` (tests/web/conftest.py).

Most of these take the request, because the session is the request's and logging in is
Django's ``login(request, user)``: they are the views' and the middleware's side, never called
below the views. What a session is bound to is a :class:`~carevault.web.clientinfo.ClientInfo`
(:func:`client_binding`); ending every session of an account is a write, in actions.py.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.signals import user_logged_in
from django.contrib.sessions.backends.base import SessionBase
from django.dispatch import receiver
from django.http import HttpRequest

from carevault.web.accounts.models import User
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo
from carevault.web.vault import service

EPOCH_KEY = "cv_epoch"
LOGIN_AT_KEY = "cv_login_at"
SEEN_AT_KEY = "cv_seen_at"
BINDING_KEY = "cv_binding"
# When the session last proved the second factor (login, step-up, enrolment): see
# factor_state.require_recent_second_factor.
SECOND_FACTOR_AT_KEY = "cv_2fa_at"
STAMP_KEYS = (EPOCH_KEY, LOGIN_AT_KEY, SEEN_AT_KEY, BINDING_KEY)

# The last-seen time is written at most this often: a save of the session row on every request
# would cost a database write per page for a precision the idle timeout does not need.
SEEN_GRANULARITY_SECONDS = 30

# Why a session was refused (the audit entry's "reason").
UNBOUND = "unbound"
BINDING = "binding"
REVOKED = "revoked"
IDLE = "idle"
EXPIRED = "expired"
TOO_MANY_CODES = "too-many-codes"  # see factor_state.wrong_code_in_session

MESSAGES = {
    IDLE: "You were logged out after a period without activity. Please log in again.",
    EXPIRED: "Your session reached its maximum length. Please log in again.",
    REVOKED: "Your session was ended. Please log in again.",
    BINDING: "Your session was ended. Please log in again.",
    UNBOUND: "Your session was ended. Please log in again.",
    TOO_MANY_CODES: "Too many wrong codes: your session was ended. Please log in again.",
}


def now() -> float:
    """The clock the guard reads (one place for tests to move)."""
    return time.time()


def idle_seconds() -> int:
    return int(settings.SESSION_IDLE_MINUTES) * 60


def absolute_seconds() -> int:
    return int(settings.SESSION_ABSOLUTE_HOURS) * 3600


def client_binding(client: ClientInfo) -> str:
    """HMAC of what identifies the client: its User-Agent and its address."""
    message = f"{client.user_agent}\x00{client.address}".encode()
    key = service.service_secret("session-binding").expose()
    return hmac.new(key, message, sha256).hexdigest()


def stamp(request: HttpRequest, user: User) -> None:
    """Record epoch, times and client binding in a session that was just logged in."""
    moment = int(now())
    session = request.session
    session[EPOCH_KEY] = int(user.session_epoch)
    session[LOGIN_AT_KEY] = moment
    session[SEEN_AT_KEY] = moment
    session[BINDING_KEY] = client_binding(ClientInfo.from_request(request))


@receiver(user_logged_in, dispatch_uid="carevault.sessions.stamp")
def _stamp_on_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    # Only a request that came from a client (a WSGI request always has its peer address): a
    # login() made from a bare HttpRequest (Django's test force_login) has no client to bind to,
    # and stays unstamped, hence refused.
    if (
        request is not None
        and isinstance(user, User)
        and hasattr(request, "session")
        and "REMOTE_ADDR" in request.META
    ):
        stamp(request, user)


def complete_login(request: HttpRequest, user: User) -> None:
    """Start the user's session: a new session key (no fixation), stamped (see above)."""
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    # The signal stamped it already; stamping here too keeps this function correct on its own.
    stamp(request, user)


def mark_second_factor(request: HttpRequest) -> None:
    request.session[SECOND_FACTOR_AT_KEY] = int(now())


@dataclass(frozen=True)
class Verdict:
    """What the guard decided for one request: refuse (with a reason) or go on."""

    reason: str = ""

    @property
    def refused(self) -> bool:
        return bool(self.reason)


def check(request: HttpRequest, user: User) -> Verdict:
    """Is this logged-in session still good for this request? Updates last-seen if it is."""
    session = request.session
    if any(key not in session for key in STAMP_KEYS):
        return Verdict(UNBOUND)
    if not hmac.compare_digest(
        str(session[BINDING_KEY]), client_binding(ClientInfo.from_request(request))
    ):
        return Verdict(BINDING)
    if session[EPOCH_KEY] != user.session_epoch:
        return Verdict(REVOKED)
    moment = now()
    if moment - float(session[SEEN_AT_KEY]) > idle_seconds():
        return Verdict(IDLE)
    if moment - float(session[LOGIN_AT_KEY]) > absolute_seconds():
        return Verdict(EXPIRED)
    if moment - float(session[SEEN_AT_KEY]) >= SEEN_GRANULARITY_SECONDS:
        session[SEEN_AT_KEY] = int(moment)
    return Verdict()


def refuse(request: HttpRequest, user: User, reason: str) -> None:
    """Audit the refusal and end the session (its row is deleted: the cookie is worthless now,
    for the thief and the owner alike)."""
    record(
        "session.refused",
        actor=user,
        outcome=Outcome.ALERT if reason == BINDING else Outcome.DENIED,
        client=ClientInfo.from_request(request),
        details={"reason": reason, "path": request.path[:200]},
    )
    end_session(request)


def end_session(request: HttpRequest) -> None:
    """Forget the session and its user, without a "logout" (the caller audits why)."""
    from django.contrib.auth.models import AnonymousUser

    request.session.flush()
    request.user = AnonymousUser()


def start_client_session(client: Any, user: User) -> None:
    """Log ``user`` in on a ``django.test.Client`` (tests, ``carevault bench web``) exactly as a
    login request from that client would: :func:`complete_login`, for a request carrying the
    client's own defaults (address, User-Agent), so the session is bound to that client.

    Django's ``Client.force_login`` cannot serve: it logs in from a bare request, with no client
    to bind to, and the session guard refuses such sessions."""
    from django.test import RequestFactory

    request = RequestFactory(**client.defaults).get("/")
    request.session = client.session
    complete_login(request, user)
    request.session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = request.session.session_key


def session_store(session_key: str) -> SessionBase:
    """Another client's session, by key (the security layer acts on sessions it observed)."""
    from importlib import import_module

    engine = import_module(settings.SESSION_ENGINE)
    store: SessionBase = engine.SessionStore(session_key=session_key)
    return store
