"""Self-registration that does not tell a visitor which usernames exist, and is rate-limited.

Taken names. Registration never answers "that username is taken": if the wanted name (compared
without regard to case) belongs to someone, the new account gets that name with a short random
suffix (``dana`` -> ``dana-4821``), and the page after registration shows the username to use,
as it does for every registration. Finding out whether a name exists therefore costs a real
registration each time, which the limit below caps and the audit log records; no error message,
status or page differs.

The limit. At most ``CAREVAULT_REGISTRATIONS_PER_HOUR`` (20) registrations per client address
in each clock hour (0 turns self-registration off), counted in Django's default cache (shared
by every worker when it is Redis or the database cache). A ward's reception desk registering
patients stays well below it; a script creating accounts or probing names does not.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches

from carevault.web.accounts.models import User
from carevault.web.clientinfo import NO_CLIENT, ClientInfo
from carevault.web.errors import ValidationFailed

from . import actions

WINDOW_SECONDS = 3600
LIMITED_MESSAGE = (
    "Too many accounts were registered from your network in the last hour. Please try again "
    "in an hour, or ask the clinic's reception desk to help you register."
)
CLOSED_MESSAGE = "Registration on this site is turned off. Please contact the clinic."
_KEY = "registrations:"
_SUFFIX_TRIES = 20


class RegistrationLimited(Exception):
    """This address registered its hourly allowance; ``retry_after`` is in seconds (0: self-
    registration is turned off, there is nothing to wait for)."""

    def __init__(self, retry_after: int, message: str = LIMITED_MESSAGE) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Registered:
    user: User
    username: str  # the name to log in with (the wanted one, or it with a suffix)


def now() -> float:
    """The clock (one place, so tests can move it)."""
    return time.time()


def limit() -> int:
    return int(getattr(settings, "REGISTRATIONS_PER_HOUR", 20))


def _window_key(client: ClientInfo) -> tuple[str, int]:
    window = int(now()) // WINDOW_SECONDS
    retry_after = (window + 1) * WINDOW_SECONDS - int(now())
    return f"{_KEY}{client.address}:{window}", retry_after


def _take_slot(client: ClientInfo) -> str:
    """Count one registration for the client's address, or raise RegistrationLimited.

    ``add`` then ``incr`` is atomic on every shared cache backend, so two workers cannot both
    take the last slot.
    """
    key, retry_after = _window_key(client)
    if limit() == 0:
        raise RegistrationLimited(0, CLOSED_MESSAGE)
    cache = caches["default"]
    cache.add(key, 0, timeout=WINDOW_SECONDS + 60)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=WINDOW_SECONDS + 60)
        count = 1
    if count > limit():
        raise RegistrationLimited(retry_after)
    return key


def _give_back(key: str) -> None:
    """A registration that failed validation does not use up the address's allowance."""
    with contextlib.suppress(ValueError):  # the window ended meanwhile
        caches["default"].decr(key)


def _taken(username: str) -> bool:
    return User.objects.filter(username__iexact=username).exists()


def available_username(wanted: str) -> str:
    """``wanted`` if nobody has it, else ``wanted`` with a random four-digit suffix."""
    if not _taken(wanted):
        return wanted
    stem = wanted[: 150 - 5]
    for _ in range(_SUFFIX_TRIES):
        candidate = f"{stem}-{secrets.randbelow(9000) + 1000}"
        if not _taken(candidate):
            return candidate
    # Thousands of "dana-NNNN" already: a longer suffix.
    return f"{wanted[: 150 - 9]}-{secrets.token_hex(4)}"


def register(
    *,
    username: str,
    password: str,
    name: str,
    birth_date: dt.date,
    email: str = "",
    phone: str = "",
    client: ClientInfo = NO_CLIENT,
) -> Registered:
    """Register a patient from ``client`` (its address is what the limit counts); raises
    RegistrationLimited, or ValidationFailed for bad details."""
    key = _take_slot(client)
    wanted = str(username or "").strip()
    try:
        for _ in range(2):
            chosen = available_username(wanted) if wanted else wanted
            try:
                user = actions.do_register_patient(
                    username=chosen,
                    password=password,
                    name=name,
                    birth_date=birth_date,
                    email=email,
                    phone=phone,
                    client=client,
                )
            except ValidationFailed as exc:
                if exc.field == "username" and chosen and _taken(chosen):
                    continue  # someone registered the same name a moment ago: another one
                raise
            return Registered(user=user, username=user.username)
        raise ValidationFailed("please try again", field=None)
    except BaseException:
        _give_back(key)
        raise
