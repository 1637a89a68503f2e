"""Shared pieces of the authentication scenarios (auth_*.py): one login attempt read the way an
attacker reads it, packet mutators, copying a cookie jar, and the timing statistic.

Only the client side of the login protocol is used (carevault.client, carevault.crypto.packets):
nothing of the server is imported.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from carevault.client import CareVaultClient, Response

SESSION_COOKIE = "sessionid"
ME = "/api/v1/me"

# What one login attempt came to, as the attacker sees it.
ACCEPTED = "accepted"  # 200 {"ok": true}: a session (or the second-factor step)
FAILED = "failed"  # 400 "Login failed."
PAUSED = "paused"  # 429 with retry_after: the name's back-off, a suspension or an address block
NO_CHALLENGE = "no-challenge"  # 429 on the challenge: this address's challenges per minute
OTHER = "other"


@dataclass(frozen=True)
class Attempt:
    kind: str
    status: int
    body: bytes
    seconds: float  # the packet's round trip (not the challenge's)
    retry_after: int = 0
    new_session: bool = False  # the answer set a session cookie the client did not hold


def classify(response: Response) -> str:
    """ACCEPTED, FAILED, PAUSED or OTHER for the answer to a login packet."""
    try:
        answer = json.loads(response.body)
    except ValueError:
        return OTHER
    if not isinstance(answer, dict):
        return OTHER
    if response.status == 200 and answer.get("ok") is True:
        return ACCEPTED
    if response.status == 400 and answer.get("ok") is False:
        return FAILED
    if response.status == 429 and isinstance(answer.get("retry_after"), int):
        return PAUSED
    return OTHER


def retry_after(response: Response) -> int:
    try:
        wait = json.loads(response.body).get("retry_after")
    except (ValueError, AttributeError):
        return 0
    return wait if isinstance(wait, int) else 0


def attempt(client: CareVaultClient, username: str, password: str) -> Attempt:
    """One login the way the browser makes it (challenge, sealed packet), timed on the packet."""
    if client.csrf_token() is None:
        client.get("/accounts/login/")
    try:
        packet = client.seal(username, password)
    except RuntimeError:
        return Attempt(NO_CHALLENGE, 429, b"", 0.0)
    return send(client, packet)


def send(client: CareVaultClient, packet: dict[str, Any] | bytes) -> Attempt:
    """Send a packet (a dict, or raw bytes as the body) and read the answer."""
    before = session_id(client)
    started = time.perf_counter()
    if isinstance(packet, bytes):
        if client.csrf_token() is None:
            client.get("/accounts/login/")
        response = client.request(
            "POST",
            "/accounts/login/packet/",
            body=packet,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Origin": client.base_url,
                "Referer": client.base_url + "/",
                "X-CSRFToken": client.csrf_token() or "",
            },
        )
    else:
        response = client.send_packet(packet)
    seconds = time.perf_counter() - started
    kind = classify(response)
    after = session_id(client)
    return Attempt(
        kind,
        response.status,
        response.body,
        seconds,
        retry_after(response),
        new_session=after is not None and after != before,
    )


def session_id(client: CareVaultClient) -> str | None:
    for cookie in client.cookies:
        if cookie.name == SESSION_COOKIE and cookie.value:
            return str(cookie.value)
    return None


def signed_in_as(client: CareVaultClient) -> str | None:
    """Who the server says this client is (``/api/v1/me``), or None."""
    response = client.get(ME)
    if response.status != 200:
        return None
    try:
        answer = response.json()
    except ValueError:
        return None
    name = answer.get("username") if isinstance(answer, dict) else None
    return str(name) if name else None


def copy_cookies(source: CareVaultClient, target: CareVaultClient) -> int:
    """Copy every cookie of ``source`` into ``target`` (a thief with the victim's cookie jar)."""
    count = 0
    for cookie in source.cookies:
        target.cookies.set_cookie(copy.copy(cookie))
        count += 1
    return count


# -- packet mutators (pure) -----------------------------------------------------------------------


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def flip_byte(packet: dict[str, str], field: str, index: int) -> dict[str, str]:
    """The packet with one byte of ``field`` flipped (``index`` from the end when negative)."""
    raw = bytearray(_unb64(packet[field]))
    raw[index] ^= 0x01
    return {**packet, field: _b64(bytes(raw))}


def truncate(packet: dict[str, str], field: str, keep: int) -> dict[str, str]:
    """The packet with ``field`` cut to its first ``keep`` bytes (negative: drop from the end)."""
    raw = _unb64(packet[field])
    return {**packet, field: _b64(raw[:keep])}


def without(packet: dict[str, str], field: str) -> dict[str, str]:
    return {k: v for k, v in packet.items() if k != field}


def with_extra(packet: dict[str, str], field: str, value: str) -> dict[str, str]:
    return {**packet, field: value}


def padded(packet: dict[str, str], field: str) -> dict[str, str]:
    """``field`` in non-canonical base64url (with ``=`` padding): the same bytes, other text."""
    text = packet[field]
    return {**packet, field: text + "=" * (-len(text) % 4 or 4)}


def duplicate_member(packet: dict[str, str], field: str, value: str) -> bytes:
    """The packet's JSON with ``field`` twice (the second ``value``): parsers disagree on
    which wins."""
    body = json.dumps(packet)[:-1]
    return (body + f", {json.dumps(field)}: {json.dumps(value)}}}").encode()


def mutations(packet: dict[str, str], other_cid: str) -> list[tuple[str, dict[str, str] | bytes]]:
    """Named alterations of a captured packet, each of which the server must refuse."""
    ct_len = len(_unb64(packet["ct"]))
    found: list[tuple[str, dict[str, str] | bytes]] = [
        ("ciphertext first byte flipped", flip_byte(packet, "ct", 0)),
        ("ciphertext middle byte flipped", flip_byte(packet, "ct", ct_len // 2)),
        ("tag last byte flipped", flip_byte(packet, "ct", -1)),
        ("iv byte flipped", flip_byte(packet, "iv", 5)),
        ("ephemeral key byte flipped", flip_byte(packet, "epk", 40)),
        ("ephemeral key prefix changed", flip_byte(packet, "epk", 0)),
        ("cid byte flipped", flip_byte(packet, "cid", 3)),
        ("cid of another challenge", {**packet, "cid": other_cid}),
        ("tag cut off", truncate(packet, "ct", ct_len - 16)),
        ("ciphertext one byte short", truncate(packet, "ct", -1)),
        ("iv one byte short", truncate(packet, "iv", -1)),
        ("ct missing", without(packet, "ct")),
        ("extra member", with_extra(packet, "username", "admin")),
        ("padded base64", padded(packet, "ct")),
        ("duplicate cid member", duplicate_member(packet, "cid", other_cid)),
        ("empty body", b""),
        ("not JSON", b"cid=" + packet["cid"].encode()),
    ]
    return found


# -- timing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimingVerdict:
    """Paired comparison of two kinds of answer, ``a`` minus ``b``, in seconds."""

    pairs: int
    median_difference: float
    noise: float  # standard error of that median (from the MAD of the differences)
    positive: int  # pairs where a was slower
    sign_p: float  # two-sided exact sign test
    distinguishable: bool

    def describe(self, a: str, b: str) -> str:
        return (
            f"{a} vs {b}: median paired difference {self.median_difference * 1000:+.2f} ms "
            f"(noise {self.noise * 1000:.2f} ms, {self.positive}/{self.pairs} slower, "
            f"sign test p={self.sign_p:.3g}): "
            + ("distinguishable" if self.distinguishable else "not distinguishable")
        )


def sign_test_p(positive: int, n: int) -> float:
    """Two-sided exact binomial sign test: P(as lopsided or more | p = 1/2)."""
    if n <= 0:
        return 1.0
    k = min(positive, n - positive)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return float(min(1.0, 2 * tail))


def compare_timings(
    a: Sequence[float],
    b: Sequence[float],
    *,
    alpha: float = 1e-3,
    z: float = 4.0,
    floor: float = 0.002,
) -> TimingVerdict:
    """Are the times of ``a`` and ``b`` (paired: ``a[i]`` and ``b[i]`` measured in the same
    round, so load that drifts over the run cancels) told apart?

    Distinguishable only when three conservative tests agree: the exact sign test rejects
    "as often slower as faster" at ``alpha``; the median difference exceeds ``z`` times its
    standard error (1.2533 x 1.4826 x MAD / sqrt(n), robust to the outliers a shared machine
    produces); and it is at least ``floor`` seconds (a difference below it is not one an attacker
    over a network could use at these sample sizes). Ties (zero differences) are dropped from
    the sign test as usual.
    """
    n = min(len(a), len(b))
    diffs = [a[i] - b[i] for i in range(n)]
    if n == 0:
        return TimingVerdict(0, 0.0, 0.0, 0, 1.0, False)
    median = statistics.median(diffs)
    mad = statistics.median(abs(d - median) for d in diffs)
    noise = 1.2533 * 1.4826 * mad / math.sqrt(n)
    positive = sum(1 for d in diffs if d > 0)
    nonzero = sum(1 for d in diffs if d != 0)
    p = sign_test_p(positive, nonzero)
    distinguishable = p < alpha and abs(median) > z * noise and abs(median) >= floor
    return TimingVerdict(n, median, noise, positive, p, distinguishable)


# -- names ----------------------------------------------------------------------------------------

_FIRST = ("anna", "ben", "carla", "dev", "elif", "femi", "greta", "hugo", "ines", "jon", "kemal")
_LAST = ("smith", "ng", "okafor", "ruiz", "weber", "khan", "silva", "novak", "park", "berg")
_STYLES = ("{f}.{l}", "{f}{l}", "{f}_{l}{n}", "{l}{f}", "{f}.{l}@clinic.example", "dr.{l}")


def unknown_names(rng: Any, count: int) -> list[str]:
    """``count`` distinct plausible account names of no demo account (a breach list's, a
    sprayer's guesses), reproducible from ``rng`` (a random.Random)."""
    names: list[str] = []
    while len(names) < count:
        style = rng.choice(_STYLES)
        name = style.format(f=rng.choice(_FIRST), l=rng.choice(_LAST), n=rng.randrange(10, 99))
        if name not in names:
            names.append(name)
    return names


def going(ctx: Any, reserve: int = 0, margin: float | None = None) -> bool:
    """May an attack loop send more? Within the request bound with ``reserve`` requests to
    spare, and with ``margin`` seconds left (default 15% of the time bound, at least 3 s) for
    the checks that follow the loop: on a loaded machine a loop that ran to the very end of
    the time bound would leave the verdict's own requests past it."""
    if margin is None:
        margin = max(3.0, 0.15 * float(ctx.bounds.seconds))
    return bool(ctx.within_bounds(reserve=reserve)) and float(ctx.time_left()) > margin
