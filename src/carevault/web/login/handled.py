"""Handled-at marks: "Unblock" and "Lift" last (issue 12).

When the security officer unblocks an address, lifts a suspension or lowers the floor, the
evidence behind that response has been looked at by a person. Without a mark, the next event
scored on the same history (the same failed logins, the same tampered record) would plan the
same response again within a second, and the officer's decision would not last. A mark says
"this subject's evidence up to now is handled" for ``SECURITY_HANDLED_HOURS`` (default 24):
the response planner leaves handled subjects alone unless *fresh* evidence names them (the
throttle resets its counters when it unblocks, so a new attack still has to cross every
threshold again from zero).

Subjects are keyed like incident subjects: ``address:<ip>``, ``account:<username>``,
``floor``. The marks live in Django's default cache (shared by every process once the cache is
shared; never per-process memory in a deployment), under a keyed hash of the subject.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable

from django.conf import settings
from django.core.cache import cache
from django.utils.crypto import salted_hmac

PREFIX = "cv:handled"
FLOOR = "floor"


def address(value: str) -> str:
    return f"address:{value}"


def account(value: str) -> str:
    return f"account:{value}"


def _key(subject: str) -> str:
    digest = salted_hmac("carevault.handled", subject, algorithm="sha256").hexdigest()[:32]
    return f"{PREFIX}:{digest}"


def hours() -> int:
    return int(settings.SECURITY_HANDLED_HOURS)


def mark(subject: str, *, by: str = "", now: float | None = None) -> dt.datetime:
    """Mark ``subject``'s evidence as handled (now) for SECURITY_HANDLED_HOURS."""
    at = time.time() if now is None else now
    cache.set(_key(subject), {"at": at, "by": by[:150]}, hours() * 3600)
    return dt.datetime.fromtimestamp(at, tz=dt.UTC)


def handled_at(subject: str) -> dt.datetime | None:
    entry = cache.get(_key(subject))
    if not isinstance(entry, dict):
        return None
    return dt.datetime.fromtimestamp(float(entry.get("at", 0.0)), tz=dt.UTC)


def is_handled(subject: str) -> bool:
    return handled_at(subject) is not None


def handled(subjects: Iterable[str]) -> frozenset[str]:
    """Which of ``subjects`` are marked (one cache round trip)."""
    wanted = {subject: _key(subject) for subject in subjects}
    found = cache.get_many(list(wanted.values()))
    return frozenset(s for s, key in wanted.items() if isinstance(found.get(key), dict))


def clear(subject: str) -> None:
    cache.delete(_key(subject))
