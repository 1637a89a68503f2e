"""Login challenges: issued to anyone, each consumed at most once (the scheme: crypto/packets.py).

A challenge lives in the ``login_challenges`` cache, the shared store every worker and app
server sees (Redis when ``REDIS_URL`` is set, else a table in the database: sharedstate/), under
its cid, for a little longer than it is valid, so that a packet arriving late is refused as
*expired* rather than as unknown; the store forgets it by its TTL (issuing one is one upsert,
whatever the number of challenges out). Consuming it is ``cache.delete``, which only one caller
can win (an atomic DEL on Redis, one DELETE statement on the database): two requests carrying
the same packet cannot both get past it, on one worker or two. A consumed cid leaves a marker
behind, so a replayed packet is told apart from a forged one in the audit log.

Anyone may ask for a challenge, so each client address may ask
``LOGIN_CHALLENGES_PER_MINUTE`` times a minute (:func:`check_rate`, one shared counter).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.utils.crypto import salted_hmac

from carevault.crypto import packets
from carevault.web.vault import service

CACHE_ALIAS = "login_challenges"
_PENDING = "login-challenge:"
_USED = "login-challenge-used:"
_RATE = "login-challenge-rate:"
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


class TooManyChallenges(Exception):
    """This address asked for more challenges this minute than allowed."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many login challenges; retry in {retry_after} s")
        self.retry_after = retry_after


def check_rate(address: str) -> None:
    """Count one challenge for ``address`` in the current minute, or raise
    :class:`TooManyChallenges` (a fixed one-minute window: add + atomic incr, so every worker
    counts into the same number). The key holds a keyed hash of the address, not the address."""
    limit = int(settings.LOGIN_CHALLENGES_PER_MINUTE)
    current = now()
    minute = int(current // 60)
    digest = salted_hmac("carevault.challenge-rate", address, algorithm="sha256").hexdigest()
    key = f"{_RATE}{digest[:32]}:{minute}"
    cache = _cache()
    cache.add(key, 0, 120)
    try:
        count = int(cache.incr(key))
    except ValueError:  # expired between add and incr (a minute boundary): a fresh window
        cache.set(key, 1, 120)
        count = 1
    if count > limit:
        raise TooManyChallenges(max(1, 60 * (minute + 1) - int(current)))


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
