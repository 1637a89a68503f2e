"""A short lock in the shared store, for the few updates that are a read and a write of one
value (a budget's charges, a monitor's history): ``add`` creates the lock key only when it is
absent, on every worker and app server alike, and the lock expires by itself if its holder dies.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import BaseCache

# Longer than any update it guards takes (a few milliseconds): a dead holder blocks at most this.
HOLD_SECONDS = 10
WAIT_SECONDS = 15.0


class LockTimeout(Exception):
    """The lock stayed taken for longer than anyone holds it."""


@contextmanager
def held(cache: BaseCache, key: str, *, wait: float = WAIT_SECONDS) -> Iterator[None]:
    token = secrets.token_hex(8)
    deadline = time.monotonic() + wait
    delay = 0.001
    while not cache.add(key, token, HOLD_SECONDS):
        if time.monotonic() > deadline:
            raise LockTimeout(f"the shared lock {key!r} stayed taken")
        time.sleep(delay)  # backing off, bounded: the holder needs milliseconds
        delay = min(delay * 2, 0.05)
    try:
        yield
    finally:
        # Only our own lock: had it expired and been taken by another, that one stays.
        if cache.get(key) == token:
            cache.delete(key)
