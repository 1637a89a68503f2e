"""Login challenges: issued to anyone, each consumed at most once (the scheme: crypto/packets.py).

A challenge lives in the ``login_challenges`` cache (Redis when ``REDIS_URL`` is set, else
files in the data directory: every worker process must see every challenge) under its cid, for
a little longer than it is valid, so that a packet arriving late is refused as *expired* rather
than as unknown. Consuming it is ``cache.delete``, which only one caller can win (an atomic DEL
on Redis, an atomic file removal otherwise): two requests carrying the same packet cannot both
get past it. A consumed cid leaves a marker behind, so a replayed packet is told apart from a
forged one in the audit log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import BaseCache, caches

from carevault.crypto import packets
from carevault.web.vault import service

CACHE_ALIAS = "login_challenges"
_PENDING = "login-challenge:"
_USED = "login-challenge-used:"
# Kept past their expiry, so a late packet is refused as "expired", not as unknown.
GRACE_SECONDS = 60
# How long a used cid is remembered (its replay is audited as "replay", later as unknown).
USED_MEMORY_SECONDS = 3600


def now() -> float:
    """The server's clock (one place, so tests can move it)."""
    return time.time()


def _cache() -> BaseCache:
    return caches[CACHE_ALIAS if CACHE_ALIAS in settings.CACHES else "default"]


@dataclass(frozen=True)
class PendingChallenge:
    cid: str
    nonce: str
    expires: int
    key_id: str


class ChallengeRefused(Exception):
    """The packet's challenge cannot be used; ``reason`` is for the audit log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def issue() -> packets.Challenge:
    challenge = packets.make_challenge(service.login_key(), now=now())
    stored = {"nonce": challenge.nonce, "expires": challenge.expires, "key_id": challenge.key_id}
    _cache().set(_PENDING + challenge.cid, stored, timeout=packets.CHALLENGE_TTL + GRACE_SECONDS)
    return challenge


def consume(cid: str) -> PendingChallenge:
    """Take the challenge ``cid`` out of the store, or raise :class:`ChallengeRefused`.

    ``cid`` must already be a well-formed cid (``LoginPacket.parse`` checks it), so no caller
    can choose odd cache keys.
    """
    cache = _cache()
    stored: Any = cache.get(_PENDING + cid)
    if stored is None:
        raise ChallengeRefused("replay" if cache.get(_USED + cid) else "unknown_challenge")
    # The marker goes first: whoever finds the challenge gone finds the marker already there.
    cache.set(_USED + cid, True, timeout=USED_MEMORY_SECONDS)
    if not cache.delete(_PENDING + cid):
        # Another request with the same cid consumed it between our get and our delete.
        raise ChallengeRefused("replay")
    return PendingChallenge(
        cid=cid, nonce=stored["nonce"], expires=stored["expires"], key_id=stored["key_id"]
    )
