"""Failed-login counting, back-off, temporary address blocks and account suspension (OWASP
Authentication Cheat Sheet; NIST SP 800-63B, 5.2.2: at most 100 consecutive failures).

Three defences, each against a different attack:

* **Per account name** (normalised, whether or not such an account exists, so the answers
  reveal nothing): the first ``LOGIN_BACKOFF_AFTER`` failures are free, then every attempt must
  wait ``2^(n - LOGIN_BACKOFF_AFTER)`` seconds after the last failure, up to
  ``LOGIN_BACKOFF_MAX_SECONDS``. This slows a guesser however many addresses they use.
* **Per client address** (:func:`carevault.web.net.client_address`, so a forged
  X-Forwarded-For changes nothing), only on evidence of an attack *from* the address (issue 12):
  a ward workstation or a clinic behind one NAT address serves many honest people, whose
  mistakes the account limits answer. Over a sliding window, failures against more account
  names than a ward has (``LOGIN_ADDRESS_MAX_USERNAMES``, default 100) or more failures than it
  makes (``LOGIN_ADDRESS_MAX_FAILURES``, 300); failures for names that do not exist faster than
  a person types (``LOGIN_ADDRESS_UNKNOWN_PER_MINUTE``, 20 a minute); replayed, forged or
  tampered login packets (``LOGIN_ADDRESS_MAX_FORGED_PACKETS``, 20). Any of these blocks the
  address for ``LOGIN_ADDRESS_BLOCK_SECONDS``; :func:`address_evidence` says which fired.
* **Suspension** of an existing account after ``LOGIN_SUSPEND_AFTER`` consecutive failures
  (``User.consecutive_failures``, durable in the database). It cannot be turned against the
  owner: a second factor or a password reset lifts it (:func:`lift_suspension`), and so does
  the security officer on the dashboard. Every suspension and lift is audited. A name that is
  no account is "suspended" at the same count (a cache mark), so a pause never tells whether
  the account exists.

While sign-in is paused (back-off, suspension, address block) attempts are refused before any
decision depends on the password; they are counted (:func:`count_refused`: one counter and one
summary audit row per address and window, plus one row for a run no person makes, which the
security layer scores), not audited one row each.

Counters live in the shared security store (the Django cache: Redis when ``REDIS_URL`` is set,
else a table in the database; sharedstate/), which every worker and app server sees, and change
only through ``cache.add`` + ``cache.incr``: ``add`` creates a key only when it is absent and
``incr`` is atomic (one script on Redis, one UPDATE statement on the database), so every
process counts every failure exactly once. Keys carry a keyed hash of the account name and
address, never the name itself: people type passwords into the name field.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac

from carevault.security.rules import REFUSED_PER_WINDOW
from carevault.web.accounts.models import User
from carevault.web.accounts.names import normalise
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo

from . import handled

PREFIX = "cv:login"
# How many of the most recent blocks the dashboard's registry remembers. Each block is one slot
# (an atomic sequence number, then a key that expires with the block), which works the same on
# Redis and on the database; an attack that blocks more addresses than this within one block
# period shows the newest ones (every block is in the audit log regardless).
REGISTRY_SIZE = 1000

REASON_ADDRESS = "address-blocked"
REASON_ACCOUNT = "account-backoff"
REASON_SUSPENDED = "account-suspended"

# Why an address was blocked (the evidence; securitycore maps them to response findings).
EVIDENCE_NAMES = "names"
EVIDENCE_FAILURES = "failures"
EVIDENCE_UNKNOWN = "unknown_names"
EVIDENCE_FORGED = "forged_packets"
# Refused packets that count as forged (an expired one is an old tab, not an attack).
NOT_FORGED = frozenset({"expired"})
# How long a name that reached the suspension limit stays paused when no account has it (an
# existing account's suspension is in the database and lasts until lifted).
NAME_SUSPENSION_SECONDS = 30 * 86400
# The refusal that summarizes a run (count_refused): the security layer's threshold for a run of
# attempts that ignore the pause.
REFUSED_RUN = REFUSED_PER_WINDOW


@dataclass(frozen=True)
class ThrottleDecision:
    blocked: bool
    retry_after: int = 0
    reason: str = ""


@dataclass(frozen=True)
class BlockedAddress:
    address: str
    since: dt.datetime
    until: dt.datetime
    reason: str
    evidence: str = ""  # EVIDENCE_* ("" for a block the security layer or an officer placed)


def clock() -> float:
    """The time the throttle decides by (seconds since the epoch); tests replace it."""
    return time.time()


# -- the login flow's three calls ------------------------------------------------------------------


def check(username: str, address: str) -> ThrottleDecision:
    """May this name be tried from this address now? Reads only; counts nothing."""
    now = clock()
    account = _account_key(username)
    block_key = _block_key(address)
    found = cache.get_many([block_key, f"{account}:n", f"{account}:last", f"{account}:suspended"])
    block = found.get(block_key)
    if isinstance(block, dict) and float(block.get("until", 0)) > now:
        return ThrottleDecision(True, _seconds(float(block["until"]) - now), REASON_ADDRESS)
    if found.get(f"{account}:suspended"):
        return ThrottleDecision(True, suspension_retry_seconds(), REASON_SUSPENDED)
    failures = int(found.get(f"{account}:n") or 0)
    last = found.get(f"{account}:last")
    if last is not None and backoff_seconds(failures) > 0:
        until = float(last) + backoff_seconds(failures)
        if until > now:
            return ThrottleDecision(True, _seconds(until - now), REASON_ACCOUNT)
    return ThrottleDecision(False)


def record_failure(username: str, address: str, *, client: ClientInfo | None = None) -> None:
    """Count a failed password check against the name and the address; block or suspend when a
    threshold is crossed."""
    now = clock()
    name = normalise(username)
    account = _account_key(username)
    reset = int(settings.LOGIN_ACCOUNT_RESET_SECONDS)
    _increment(f"{account}:n", reset)
    # The count lives until RESET seconds after the *latest* failure (touch), so a slow guesser
    # who waits out every back-off keeps their count.
    cache.touch(f"{account}:n", reset)
    cache.set(f"{account}:last", now, reset)

    bucket = _bucket(now)
    base = f"{_address_key(address)}:{bucket}"
    ttl = _bucket_ttl()
    _increment(f"{base}:fails", ttl)
    # add() succeeds for the first failure against this name in this bucket only: the count of
    # distinct names is exact, with no list to read, modify and write back.
    if cache.add(f"{base}:name:{_digest(name)}", 1, ttl):
        _increment(f"{base}:names", ttl)

    exists = _count_consecutive_failure(username, client)
    if not exists:
        _increment(f"{_address_key(address)}:unknown:{int(now // 60)}", 120)
        if int(cache.get(f"{account}:n") or 0) >= int(settings.LOGIN_SUSPEND_AFTER):
            # The same pause an existing account gets at this count (see the module docstring).
            cache.set(f"{account}:suspended", 1, NAME_SUSPENSION_SECONDS)
    evidence = address_evidence(address, now=now)
    if evidence:
        _block(address, evidence[0][1], now, client, evidence=evidence[0][0])


def address_evidence(address: str, *, now: float | None = None) -> list[tuple[str, str]]:
    """Which of the address limits its counts have reached now, as (evidence, reason for
    people), strongest first; [] for an address with no evidence of an attack."""
    now = clock() if now is None else now
    failures, names = address_counts(address, now=now)
    window = _minutes(_window())
    found = []
    if names >= int(settings.LOGIN_ADDRESS_MAX_USERNAMES):
        found.append((EVIDENCE_NAMES, f"failed logins against {names} account names in {window}"))
    if failures >= int(settings.LOGIN_ADDRESS_MAX_FAILURES):
        found.append((EVIDENCE_FAILURES, f"{failures} failed logins in {window}"))
    unknown = unknown_per_minute(address, now=now)
    if unknown >= int(settings.LOGIN_ADDRESS_UNKNOWN_PER_MINUTE):
        found.append((EVIDENCE_UNKNOWN, f"{unknown} failed logins for unknown names in one minute"))
    forged = forged_packets(address, now=now)
    if forged >= int(settings.LOGIN_ADDRESS_MAX_FORGED_PACKETS):
        found.append((EVIDENCE_FORGED, f"{forged} replayed or forged login packets in {window}"))
    return found


def unknown_per_minute(address: str, *, now: float | None = None) -> int:
    """Failures for names that are no account, from the address, in the current minute."""
    now = clock() if now is None else now
    return int(cache.get(f"{_address_key(address)}:unknown:{int(now // 60)}") or 0)


def forged_packets(address: str, *, now: float | None = None) -> int:
    """Refused login packets (not merely expired) from the address over the sliding window."""
    now = clock() if now is None else now
    bucket = _bucket(now)
    elapsed = (now % _window()) / _window()
    base = _address_key(address)
    found = cache.get_many([f"{base}:{bucket}:forged", f"{base}:{bucket - 1}:forged"])
    current = int(found.get(f"{base}:{bucket}:forged") or 0)
    previous = int(found.get(f"{base}:{bucket - 1}:forged") or 0)
    return math.ceil(current + previous * (1 - elapsed))


def record_forged_packet(address: str, reason: str, *, client: ClientInfo | None = None) -> bool:
    """Count a refused login packet; block the address at the limit. Returns whether the
    packet counted as forged (an expired packet does not)."""
    if reason in NOT_FORGED:
        return False
    now = clock()
    _increment(f"{_address_key(address)}:{_bucket(now)}:forged", _bucket_ttl())
    forged = forged_packets(address, now=now)
    if forged >= int(settings.LOGIN_ADDRESS_MAX_FORGED_PACKETS):
        window = _minutes(_window())
        _block(
            address,
            f"{forged} replayed or forged login packets in {window}",
            now,
            client,
            evidence=EVIDENCE_FORGED,
        )
    return True


def count_refused(address: str, reason: str, *, client: ClientInfo | None = None) -> int:
    """Count one attempt refused while sign-in is paused (or a packet refused from a blocked
    address): one counter per address and window, and one summary audit row when the window's
    first refusal arrives, instead of a row (and a security event) per attempt; one more row,
    ``auth.refused_run`` (a security event), when the run reaches ``REFUSED_RUN``. Constant
    work per attempt, at most two rows per address and window. Returns the window's count so
    far. The same work whatever the password was (flow.py)."""
    now = clock()
    key = f"{_address_key(address)}:{_bucket(now)}:refused"
    count = _increment(key, _bucket_ttl())
    if count == 1:
        record(
            "auth.refused_counted",
            outcome=Outcome.DENIED,
            client=client,
            details={
                "reason": reason,
                "window_seconds": _window(),
                "note": "further refusals from this address in this window are counted only",
            },
        )
    elif count == REFUSED_RUN:
        # Once more, when the run is as long as no person makes it: this row is the security
        # layer's event (securitycore: the "refused_run" rule), still one per address and window.
        record(
            "auth.refused_run",
            outcome=Outcome.DENIED,
            client=client,
            details={
                "reason": reason,
                "refused": count,
                "window_seconds": _window(),
                "note": "attempts refused while sign-in was paused, from this address",
            },
        )
    return count


def refused_count(address: str, *, now: float | None = None) -> int:
    """Attempts refused from the address in the current window."""
    now = clock() if now is None else now
    return int(cache.get(f"{_address_key(address)}:{_bucket(now)}:refused") or 0)


def suspension_retry_seconds() -> int:
    """What a suspended name is told to wait: suspension lasts until lifted, so the longest
    back-off (the same answer a name in back-off gets, so neither tells which it is)."""
    return int(settings.LOGIN_BACKOFF_MAX_SECONDS)


def record_success(user: User, address: str) -> None:
    """A correct login ends the account's back-off and its run of consecutive failures. The
    address's counts stay: an attacker could otherwise reset them with an account of their own."""
    _forget_account(user.username)
    User.objects.filter(pk=user.pk, consecutive_failures__gt=0).update(consecutive_failures=0)
    user.consecutive_failures = 0


# -- suspension ------------------------------------------------------------------------------------


def lift_suspension(
    user: User, *, actor: User | None, reason: str, client: ClientInfo | None = None
) -> bool:
    """Lift the account's suspension (second factor, password reset, the security officer),
    reset its failure counts and back-off. Audited when there was a suspension to lift; returns
    whether there was one."""
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        suspended_at, suspension_reason = locked.suspended_at, locked.suspension_reason
        locked.suspended_at = None
        locked.suspension_reason = ""
        locked.consecutive_failures = 0
        locked.save(update_fields=["suspended_at", "suspension_reason", "consecutive_failures"])
        if suspended_at is not None:
            record(
                "account.unsuspended",
                actor=actor,
                target=locked,
                client=client,
                details={
                    "username": locked.username,
                    "reason": reason[:200],
                    "suspended_at": suspended_at.isoformat(),
                    "suspension_reason": suspension_reason,
                },
            )
    user.suspended_at, user.suspension_reason, user.consecutive_failures = None, "", 0
    _forget_account(locked.username)
    if suspended_at is not None and (actor is None or actor.pk != locked.pk):
        # An officer's (or the system's) lift lasts: the same evidence does not suspend the
        # account again. The owner's own second factor or reset needs no mark.
        handled.mark(
            handled.account(locked.username), by=actor.username if actor is not None else ""
        )
    return suspended_at is not None


def suspended_users() -> QuerySet[User]:
    return User.objects.filter(suspended_at__isnull=False).order_by("-suspended_at")


def _count_consecutive_failure(username: str, client: ClientInfo | None) -> bool:
    """One more consecutive failure for the account of that name, if there is one; suspend it at
    the threshold. The increment is a single UPDATE, so concurrent failures all count. Returns
    whether an account has that name."""
    username = username.strip()
    if not username:
        return False
    limit = int(settings.LOGIN_SUSPEND_AFTER)
    # Usernames are unique regardless of case (accounts.actions, clinic.actions), so "Doctor1"
    # is an attack on doctor1 even though the password check itself is case-sensitive.
    same_name = User.objects.filter(username__iexact=username)
    with transaction.atomic():
        if not same_name.update(consecutive_failures=F("consecutive_failures") + 1):
            return False
        to_suspend = same_name.select_for_update().filter(
            suspended_at__isnull=True, consecutive_failures__gte=limit
        )
        for user in to_suspend:
            cache.set(f"{_account_key(user.username)}:suspended", 1, NAME_SUSPENSION_SECONDS)
            user.suspended_at = timezone.now()
            user.suspension_reason = f"{user.consecutive_failures} consecutive failed logins"
            user.save(update_fields=["suspended_at", "suspension_reason"])
            record(
                "account.suspended",
                outcome=Outcome.ALERT,
                target=user,
                client=client,
                details={
                    "username": user.username,
                    "reason": user.suspension_reason,
                    "failures": user.consecutive_failures,
                },
            )
    return True


# -- address blocks --------------------------------------------------------------------------------


def address_counts(address: str, *, now: float | None = None) -> tuple[int, int]:
    """(failures, distinct account names) from this address over the sliding window.

    Two fixed buckets, the previous one weighted by how much of it still overlaps the window
    (the sliding-window counter): no cliff at a bucket edge, two keys per count. Rounded up, so
    the estimate errs towards counting."""
    now = clock() if now is None else now
    bucket = _bucket(now)
    elapsed = (now % _window()) / _window()
    current, previous = (f"{_address_key(address)}:{b}" for b in (bucket, bucket - 1))
    keys = [f"{current}:fails", f"{current}:names", f"{previous}:fails", f"{previous}:names"]
    found = cache.get_many(keys)
    counts = [int(found.get(key) or 0) for key in keys]

    def slide(now_count: int, before: int) -> int:
        return math.ceil(now_count + before * (1 - elapsed))

    return slide(counts[0], counts[2]), slide(counts[1], counts[3])


def describe() -> dict[str, Any]:
    """The thresholds in force (the dashboard shows them next to the lists)."""
    return {
        "backoff_after": int(settings.LOGIN_BACKOFF_AFTER),
        "backoff_max": int(settings.LOGIN_BACKOFF_MAX_SECONDS),
        "suspend_after": int(settings.LOGIN_SUSPEND_AFTER),
        "window_minutes": _window() // 60,
        "address_max_failures": int(settings.LOGIN_ADDRESS_MAX_FAILURES),
        "address_max_usernames": int(settings.LOGIN_ADDRESS_MAX_USERNAMES),
        "address_unknown_per_minute": int(settings.LOGIN_ADDRESS_UNKNOWN_PER_MINUTE),
        "address_max_forged_packets": int(settings.LOGIN_ADDRESS_MAX_FORGED_PACKETS),
        "block_minutes": int(settings.LOGIN_ADDRESS_BLOCK_SECONDS) // 60,
    }


def blocked_addresses() -> list[BlockedAddress]:
    """Addresses blocked right now, newest first."""
    now = clock()
    last = int(cache.get(f"{PREFIX}:blocks:seq") or 0)
    slots = cache.get_many(
        [f"{PREFIX}:blocks:{n}" for n in range(max(1, last - REGISTRY_SIZE + 1), last + 1)]
    )
    addresses = {str(address): _block_key(str(address)) for address in slots.values()}
    found = cache.get_many(list(addresses.values()))
    blocked = []
    for address, key in addresses.items():
        block = found.get(key)
        if isinstance(block, dict) and float(block.get("until", 0)) > now:
            blocked.append(
                BlockedAddress(
                    address=address,
                    since=_datetime(float(block["since"])),
                    until=_datetime(float(block["until"])),
                    reason=str(block.get("reason", "")),
                    evidence=str(block.get("evidence", "")),
                )
            )
    return sorted(blocked, key=lambda item: item.since, reverse=True)


def unblock_address(address: str, *, actor: User | None, client: ClientInfo | None = None) -> bool:
    """End the address's block and forget the evidence behind it (the officer vouches for it):
    its window's counts are reset and the address is marked handled (handled.py), so neither
    the throttle nor the security layer blocks it again on what happened before. Audited when
    there was a block to end; returns whether there was one."""
    now = clock()
    key = _block_key(address)
    block = cache.get(key)
    bucket = _bucket(now)
    base = _address_key(address)
    minute = int(now // 60)
    cache.delete_many(
        [key]
        + [
            f"{base}:{b}:{count}"
            for b in (bucket, bucket - 1)
            for count in ("fails", "names", "forged")
        ]
        + [f"{base}:unknown:{m}" for m in (minute, minute - 1)]
    )
    handled.mark(handled.address(address), by=actor.username if actor is not None else "")
    if not (isinstance(block, dict) and float(block.get("until", 0)) > now):
        return False
    record(
        "auth.address_unblocked",
        actor=actor,
        client=client,
        details={"address": address, "reason": str(block.get("reason", ""))},
    )
    return True


def block_address(
    address: str,
    reason: str,
    *,
    seconds: int | None = None,
    client: ClientInfo | None = None,
) -> bool:
    """Block the address now, for ``seconds`` (default LOGIN_ADDRESS_BLOCK_SECONDS): the
    security layer's "throttle the address" response. Listed on the dashboard and audited
    like the throttle's own blocks; returns False (and changes nothing) if it is blocked
    already."""
    return _block(address, reason[:200], clock(), client, seconds)


def address_decision(address: str) -> ThrottleDecision:
    """Is the address itself blocked (whatever name is tried)?"""
    now = clock()
    block = cache.get(_block_key(address))
    if isinstance(block, dict) and float(block.get("until", 0)) > now:
        return ThrottleDecision(True, _seconds(float(block["until"]) - now), REASON_ADDRESS)
    return ThrottleDecision(False)


def is_blocked(address: str) -> bool:
    block = cache.get(_block_key(address))
    return isinstance(block, dict) and float(block.get("until", 0)) > clock()


def _block(
    address: str,
    reason: str,
    now: float,
    client: ClientInfo | None,
    seconds: int | None = None,
    *,
    evidence: str = "",
) -> bool:
    seconds = int(settings.LOGIN_ADDRESS_BLOCK_SECONDS) if seconds is None else max(1, seconds)
    key = _block_key(address)
    entry = {
        "address": address,
        "since": now,
        "until": now + seconds,
        "reason": reason,
        "evidence": evidence,
    }
    # add(): of several app servers crossing the threshold together, one blocks and audits.
    if not cache.add(key, entry, seconds):
        current = cache.get(key)
        if isinstance(current, dict) and float(current.get("until", 0)) > now:
            return False
        cache.set(key, entry, seconds)
    slot = _increment(f"{PREFIX}:blocks:seq", None)
    cache.set(f"{PREFIX}:blocks:{slot}", address, seconds)
    record(
        "auth.address_blocked",
        outcome=Outcome.ALERT,
        client=client,
        details={
            "address": address,
            "reason": reason,
            "seconds": seconds,
            "evidence": evidence,
        },
    )
    return True


# -- helpers ---------------------------------------------------------------------------------------


def backoff_seconds(failures: int) -> int:
    """How long after the last failure the next attempt must wait."""
    after = int(settings.LOGIN_BACKOFF_AFTER)
    if failures < after:
        return 0
    # The exponent is capped so that a huge count does not build a huge integer.
    return min(1 << min(failures - after, 62), int(settings.LOGIN_BACKOFF_MAX_SECONDS))


def _increment(key: str, timeout: int | None) -> int:
    """Add one to a counter, creating it with its expiry when absent."""
    for _ in range(3):
        cache.add(key, 0, timeout)
        try:
            return int(cache.incr(key))
        except ValueError:
            # It expired between add() and incr(): create it again.
            continue
    cache.set(key, 1, timeout)  # pragma: no cover - expiring three times in a row
    return 1  # pragma: no cover


def _forget_account(username: str) -> None:
    account = _account_key(username)
    cache.delete_many([f"{account}:n", f"{account}:last", f"{account}:suspended"])


def _digest(value: str) -> str:
    # Keyed (SECRET_KEY, shared by every app server): whoever reads the cache cannot test
    # guesses of the names (or mistyped passwords) behind the keys.
    return salted_hmac("carevault.throttle", value, algorithm="sha256").hexdigest()[:32]


def account_digest(username: str) -> str:
    """The keyed hash the throttle knows a name by (never the name itself)."""
    return _digest(normalise(username))


def _account_key(username: str) -> str:
    return f"{PREFIX}:acct:{_digest(normalise(username))}"


def _address_key(address: str) -> str:
    return f"{PREFIX}:addr:{_digest(address)}"


def _block_key(address: str) -> str:
    return f"{PREFIX}:block:{_digest(address)}"


def _window() -> int:
    return int(settings.LOGIN_ADDRESS_WINDOW_SECONDS)


def _bucket(now: float) -> int:
    return int(now // _window())


def _bucket_ttl() -> int:
    # A bucket is read while it is current and while it is the previous one.
    return 2 * _window() + 60


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _datetime(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
