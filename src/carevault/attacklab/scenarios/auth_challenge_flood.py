"""Challenge flood: login challenges fetched as fast as the server hands them out, from one
address and then from several, while an honest ward computer keeps signing in.

Anyone may ask for a challenge (it is the first step of every login), and every challenge is
stored until it is used or expires, so an unlimited challenge endpoint is a way to fill the
server's store and to wear it down. The server limits each address to
``LOGIN_CHALLENGES_PER_MINUTE`` (60) a minute and answers past it with 429 and a wait.

What the attacker can observe from outside: the 429 and its wait, and whether the honest client
is served. In the lab the scenario also reads the challenge store the way an officer would
(the ``sharedstate_entry`` table of the lab's SQLite database, read-only): how many pending
challenges are live before and after, and how long the newest one will live.

Held: every flooding address gets 429 with a ``Retry-After`` once it has spent its minute's
challenges (and keeps getting it); every honest login in between succeeds; and (in the lab)
the store grew by no more than the challenges actually handed out, each with a bounded
lifetime: refused requests store nothing, so its size is bounded by addresses x rate x
lifetime, not by the number of requests. What that bound is for an attacker with very many
addresses is said in the findings.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.attacklab.target import AttackClient
from carevault.client import CHALLENGE_PATH

from . import _auth_kit as kit

HONEST = "doctor1"
LIMIT = 60  # LOGIN_CHALLENGES_PER_MINUTE, the default the lab runs with
LIFETIME = 180  # a challenge's 120 s plus the store's 60 s of grace
HONEST_EVERY = 25  # attacker requests between two honest logins


@dataclass
class Flood:
    address: str
    granted: int = 0
    refused: int = 0
    first_refusal_after: int | None = None
    retry_after_header: str = ""
    retry_after_body: int = 0


@dataclass(frozen=True)
class StoreView:
    pending: int
    longest_ttl: float
    bytes: int


def store_view(database: str) -> StoreView | None:
    """Live pending challenges in the lab's store (read-only), or None if it cannot be read."""
    try:
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        row = db.execute(
            "SELECT COUNT(*), COALESCE(MAX(expires_at), 0), COALESCE(SUM(LENGTH(value)), 0) "
            "FROM sharedstate_entry WHERE key LIKE '%login-challenge:%' AND expires_at > ?",
            (time.time(),),
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return StoreView(int(row[0]), max(0.0, float(row[1]) - time.time()), int(row[2]))


class Honest:
    def __init__(self, ctx: Context) -> None:
        self.client = ctx.honest_client(2)
        self.password = ctx.password(HONEST)
        ctx.honest_accounts.add(HONEST)
        self.ok = 0
        self.failed: list[str] = []
        self.seconds: list[float] = []

    def sign_in(self) -> None:
        started = time.perf_counter()
        result = kit.attempt(self.client, HONEST, self.password)
        self.seconds.append(time.perf_counter() - started)
        if result.kind == kit.ACCEPTED:
            self.ok += 1
            self.client.logout()
        else:
            self.failed.append(result.kind)


def flood(ctx: Context, client: AttackClient, honest: Honest, sent: list[int], cap: int) -> Flood:
    """Challenges from ``client`` until refused (then three more, to see the refusal lasts)."""
    found = Flood(client.address)
    after_refusal = 0
    for _ in range(cap):
        if not kit.going(ctx, 2) or after_refusal >= 3:
            break
        response = client.get(CHALLENGE_PATH)
        sent[0] += 1
        if sent[0] % HONEST_EVERY == 0:
            honest.sign_in()
        if response.status == 200:
            found.granted += 1
            if found.first_refusal_after is not None:
                after_refusal = 99  # granted again after a refusal: a new minute began
            continue
        found.refused += 1
        after_refusal += 1
        if found.first_refusal_after is None:
            found.first_refusal_after = found.granted
            found.retry_after_header = response.headers.get("Retry-After", "")
            found.retry_after_body = kit.retry_after(response)
    return found


def run(ctx: Context) -> Outcome:
    honest = Honest(ctx)
    database = str(ctx.files.database) if ctx.files is not None else None
    before = store_view(database) if database else None
    honest.sign_in()
    sent = [0]
    floods = [flood(ctx, ctx.client(0), honest, sent, 2 * LIMIT + 5)]
    for n in range(1, 4 if ctx.quick else 9):
        if not kit.going(ctx, LIMIT + 5):
            break
        floods.append(flood(ctx, ctx.client(n), honest, sent, 2 * LIMIT + 5))
    honest.sign_in()
    after = store_view(database) if database else None

    granted = sum(f.granted for f in floods)
    refused = sum(f.refused for f in floods)
    limited = [f for f in floods if f.first_refusal_after is not None]
    waits_ok = all(f.retry_after_header and f.retry_after_body > 0 for f in limited)
    findings = [
        f"{len(floods)} addresses asked {granted + refused} times: {granted} challenges handed "
        f"out, {refused} refused with 429",
        "first refusal after "
        + ", ".join(str(f.first_refusal_after) for f in floods)
        + " challenges per address; waits told: "
        + ", ".join(f"{f.retry_after_header or '-'} s" for f in floods),
    ]
    unlimited = [f.address for f in floods if f.first_refusal_after is None]
    if unlimited:
        findings.append(f"never refused: {', '.join(unlimited)}")
    median_ms = sorted(honest.seconds)[len(honest.seconds) // 2] * 1000 if honest.seconds else 0
    findings.append(
        f"honest ward computer: {honest.ok} of {honest.ok + len(honest.failed)} logins served "
        f"(median {median_ms:.0f} ms)"
    )
    store_ok = True
    if before is not None and after is not None:
        grew = after.pending - before.pending
        store_ok = grew <= granted + 2 and after.longest_ttl <= LIFETIME + 5
        findings.append(
            f"challenge store: {before.pending} -> {after.pending} live pending challenges "
            f"({after.bytes} bytes), the newest lives {after.longest_ttl:.0f} s more; bound: "
            f"{LIMIT} a minute x {LIFETIME // 60} minutes per address "
            f"(~{LIMIT * LIFETIME // 60} per attacking address)"
        )
        per_row = after.bytes / after.pending if after.pending else 0
        findings.append(
            "no global cap: the store grows linearly with the attacker's addresses "
            f"(~{LIMIT * LIFETIME // 60 * per_row / 1024:.0f} KB of values per address, "
            "forgotten 3 minutes after the flood stops)"
        )
    else:
        findings.append("challenge store not observable here (no data directory)")
    held = (
        len(limited) == len(floods)
        and waits_ok
        and not honest.failed
        and honest.ok > 0
        and store_ok
    )
    return Outcome(
        held=held,
        defences=["rate limit"] if limited else [],
        findings=findings,
        metrics={
            "addresses": len(floods),
            "granted": granted,
            "refused": refused,
            "first_refusal_after": [f.first_refusal_after for f in floods],
            "honest_ok": honest.ok,
            "honest_failed": len(honest.failed),
            "honest_median_ms": round(median_ms, 1),
            "store_before": before.pending if before else None,
            "store_after": after.pending if after else None,
        },
    )


SCENARIO = Scenario(
    name="auth.challenge-flood",
    category="authentication",
    attacks="login challenges fetched as fast as possible from one address and from several",
    held_means="each address gets 429 with a wait past its rate, honest logins keep working, "
    "and the challenge store grows only by what was handed out",
    bounds=Bounds(requests=1200, seconds=60),
    quick_bounds=Bounds(requests=520, seconds=25),
    run=run,
    expect_detection=True,
)
