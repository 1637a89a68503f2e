"""Replay and tampering of captured login packets (the scheme: crypto/packets.py).

The attacker captured a valid login packet, sealed with the victim's right password (a proxy
log, a compromised middlebox, a browser extension: TLS stops the network attacker already), and
tries to make it count again or make it say something else.

``auth.packet-replay``
    The owner sends the packet and is signed in; the attacker then sends it again from the same
    cookie jar and from another client (another address); sends it twice at the same moment
    from two clients, to race the single use across the two workers (exactly one may win); seals
    two packets under one challenge (a wrong password, then the right one) so that one challenge
    would buy many guesses; and seals packets whose inner timestamp is stale or in the future
    (in the full run also one sent after its challenge really expired, 120 s).

``auth.packet-tamper``
    Each of many alterations is made to a fresh capture carrying the right password: flipped
    bytes in the ciphertext, tag, iv, ephemeral key and cid, another challenge's cid, truncation,
    missing, extra and duplicated members, non-canonical base64, an empty or non-JSON body; and
    well-sealed packets with wrong contents (a foreign nonce, a missing or extra member, a
    timestamp of the wrong type, bytes that are not JSON).

Held (both): every replayed or altered packet is refused, with the one opaque answer a wrong
password gets (byte for byte; or the address's pause once its forged-packet limit blocks it),
and no refused packet ever leaves a session behind (``/api/v1/me`` says nobody). The race: at
most one of two simultaneous sends is accepted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.attacklab.target import AttackClient
from carevault.crypto.packets import seal_payload

from . import _auth_kit as kit

VICTIM = "patient3"
# Refusals sent from one address before moving to the next (the forged-packet limit is 20).
PER_ADDRESS = 12


class Refusals:
    """Every answer to a packet that should have been refused, judged against the answer to a
    plain wrong password."""

    def __init__(self, baseline: kit.Attempt) -> None:
        self.baseline = baseline
        self.accepted: list[str] = []
        self.odd: list[str] = []
        self.sessions: list[str] = []
        self.kinds: dict[str, int] = {}

    def judge(self, label: str, result: kit.Attempt) -> None:
        self.kinds[result.kind] = self.kinds.get(result.kind, 0) + 1
        if result.kind == kit.ACCEPTED:
            self.accepted.append(label)
        elif result.kind == kit.FAILED:
            same = (result.status, result.body) == (self.baseline.status, self.baseline.body)
            if not same:
                self.odd.append(f"{label}: HTTP {result.status}, a different body")
        elif result.kind != kit.PAUSED:
            self.odd.append(f"{label}: HTTP {result.status}")
        if result.new_session:
            self.sessions.append(label)

    def findings(self) -> list[str]:
        found = [
            "answers to refused packets: "
            + ", ".join(f"{v} {k}" for k, v in sorted(self.kinds.items()))
        ]
        if self.accepted:
            found.append("ACCEPTED: " + "; ".join(self.accepted))
        if self.odd:
            found.append("answers that differ from a wrong password's: " + "; ".join(self.odd))
        if self.sessions:
            found.append("a session cookie after: " + "; ".join(self.sessions))
        return found

    @property
    def clean(self) -> bool:
        return not (self.accepted or self.odd or self.sessions)


class Rotation:
    """Attacker clients, a new address every PER_ADDRESS packets."""

    def __init__(self, ctx: Context, first: int) -> None:
        self.ctx, self.n, self.used = ctx, first, 0
        self.client = ctx.client(first)
        self.clients = [self.client]

    def next(self) -> AttackClient:
        if self.used >= PER_ADDRESS:
            self.n += 1
            self.used = 0
            self.client = self.ctx.client(self.n)
            self.clients.append(self.client)
        self.used += 1
        return self.client

    def all_signed_out(self) -> bool:
        return all(kit.signed_in_as(client) is None for client in self.clients)


def _baseline(ctx: Context, n: int) -> kit.Attempt:
    """The answer to a wrong password (what every refusal must look like), for a name that is
    no account, so that it is the plain failure whatever state the victim is in."""
    result = kit.attempt(ctx.client(n), f"zz.baseline.{ctx.rng.randrange(10**6)}", "Wrong-1234")
    if result.kind != kit.FAILED:
        raise RuntimeError(f"a plain wrong password was answered {result.kind!r}: no baseline")
    return result


def _sealed(client: AttackClient, index: int, password: str) -> dict[str, str]:
    """The ``index``-th wrong-contents packet, sealed under a fresh challenge of its own."""
    received = client.challenge()
    contents = _wrong_contents(received.challenge.nonce, password, int(received.server_now()))
    return seal_payload(received.challenge, contents[index][1])


# -- replay ---------------------------------------------------------------------------------------


def race(clients: list[AttackClient], packet: dict[str, str]) -> list[kit.Attempt]:
    """Send ``packet`` from every client at the same moment (one thread each)."""
    results: list[kit.Attempt] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(clients))

    def send(client: AttackClient) -> None:
        barrier.wait()
        answer = kit.send(client, packet)
        with lock:
            results.append(answer)

    threads = [threading.Thread(target=send, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def run_replay(ctx: Context) -> Outcome:
    password = ctx.password(VICTIM)
    ctx.accounts.add(VICTIM)
    owner = ctx.client(0, user_agent="Mozilla/5.0 (victim's browser)")
    refusals = Refusals(_baseline(ctx, 1))
    findings: list[str] = []

    captured = owner.seal(VICTIM, password)
    first = kit.send(owner, captured)
    if first.kind != kit.ACCEPTED:
        # Nothing to replay: the victim cannot sign in (paused by an earlier scenario?).
        raise RuntimeError(f"the owner's own packet was answered {first.kind!r}: no baseline")
    refusals.judge("replay from the owner's cookie jar", kit.send(owner, captured))
    thief = ctx.client(2, user_agent="Mozilla/5.0 (thief)")
    refusals.judge("replay from another client", kit.send(thief, captured))

    # Race: the same fresh packet from two clients at once, three times (two workers).
    race_wins: list[int] = []
    for n in range(3):
        packet = ctx.client(3).seal(VICTIM, password)
        racers = [ctx.client(4 + n), ctx.client(8 + n)]
        for racer in racers:
            racer.get("/accounts/login/")
        results = race(racers, packet)
        race_wins.append(sum(1 for r in results if r.kind == kit.ACCEPTED))
        for result in results:
            if result.kind != kit.ACCEPTED:
                refusals.judge(f"race {n + 1}, the losing copy", result)

    # One challenge, two packets: a wrong password, then the right one.
    reuser = ctx.client(12)
    reuser.get("/accounts/login/")
    received = reuser.challenge()
    c = received.challenge
    wrong = {"username": VICTIM, "password": "Guess-1234", "nonce": c.nonce, "ts": c.issued}
    right = {"username": VICTIM, "password": password, "nonce": c.nonce, "ts": c.issued}
    guess = kit.send(reuser, seal_payload(c, wrong))
    if guess.kind == kit.ACCEPTED:
        refusals.accepted.append("a wrong password")
    refusals.judge(
        "the right password under a used challenge", kit.send(reuser, seal_payload(c, right))
    )

    # Stale and future timestamps inside a well-sealed packet.
    stamper = ctx.client(13)
    for label, shift in (("timestamp 5 minutes old", -300), ("timestamp 5 minutes ahead", 300)):
        got = stamper.challenge()
        payload = {
            "username": VICTIM,
            "password": password,
            "nonce": got.challenge.nonce,
            "ts": int(got.server_now()) + shift,
        }
        refusals.judge(label, kit.send(stamper, seal_payload(got.challenge, payload)))

    # A packet sent after its challenge expired (only when the bounds leave time for it).
    expiry = "not tried (the bounds leave no time for the 120 s challenge lifetime)"
    late: AttackClient | None = None
    if ctx.time_left() > 135:
        late = ctx.client(14)
        packet = late.seal(VICTIM, password)
        time.sleep(122)
        answer = kit.send(late, packet)
        refusals.judge("sent after the challenge expired", answer)
        expiry = f"sent 122 s after its challenge: {answer.kind}"

    attackers = [thief, reuser, stamper] + ([late] if late is not None else [])
    thief_session = [c.address for c in attackers if kit.signed_in_as(c) is not None]
    race_ok = all(w <= 1 for w in race_wins)
    findings += refusals.findings()
    findings.append(f"races (two simultaneous sends of one packet): winners {race_wins}")
    findings.append(f"expiry: {expiry}")
    if thief_session:
        findings.append(f"attacker clients signed in: {thief_session}")
    held = refusals.clean and race_ok and not thief_session
    return Outcome(
        held=held,
        defences=["packet check"] if refusals.kinds else [],
        leaked=len(refusals.accepted) + sum(max(0, w - 1) for w in race_wins),
        findings=findings,
        metrics={"answers": refusals.kinds, "race_winners": race_wins},
    )


# -- tamper ---------------------------------------------------------------------------------------


def _wrong_contents(nonce: str, password: str, ts: int) -> list[tuple[str, dict[str, Any] | bytes]]:
    base = {"username": VICTIM, "password": password, "nonce": nonce, "ts": ts}
    return [
        ("well sealed, foreign nonce", {**base, "nonce": "AAAAAAAAAAAAAAAAAAAAAA"}),
        ("well sealed, nonce missing", {k: v for k, v in base.items() if k != "nonce"}),
        ("well sealed, extra member", {**base, "role": "admin"}),
        ("well sealed, ts as text", {**base, "ts": str(ts)}),
        ("well sealed, not JSON", b"username=" + VICTIM.encode()),
    ]


def run_tamper(ctx: Context) -> Outcome:
    password = ctx.password(VICTIM)
    ctx.accounts.add(VICTIM)
    owner = ctx.client(0, user_agent="Mozilla/5.0 (victim's browser)")
    refusals = Refusals(_baseline(ctx, 1))
    rotation = Rotation(ctx, 2)
    probe = owner.seal(VICTIM, "placeholder-for-shape")
    labels = [label for label, _ in kit.mutations(probe, probe["cid"])]
    tried = 0
    for index, label in enumerate(labels):
        if not kit.going(ctx, 8):
            break
        captured = owner.seal(VICTIM, password)  # a fresh capture with the right password
        attacker = rotation.next()
        other_cid = attacker.challenge().challenge.cid
        _, altered = kit.mutations(captured, other_cid)[index]
        refusals.judge(label, kit.send(attacker, altered))
        tried += 1
    for index, (label, _) in enumerate(_wrong_contents("", password, 0)):
        if not kit.going(ctx, 6):
            break
        attacker = rotation.next()
        refusals.judge(label, kit.send(attacker, _sealed(owner, index, password)))
        tried += 1
    signed_out = rotation.all_signed_out()
    findings = [f"{tried} altered packets sent from {len(rotation.clients)} addresses"]
    findings += refusals.findings()
    if not signed_out:
        findings.append("an attacker client is signed in")
    return Outcome(
        held=refusals.clean and signed_out and tried > 0,
        defences=["packet check"] if tried else [],
        leaked=len(refusals.accepted),
        findings=findings,
        metrics={"altered": tried, "answers": refusals.kinds},
    )


SCENARIOS = [
    Scenario(
        name="auth.packet-replay",
        category="authentication",
        attacks="a captured login packet sent again, from another client, raced, re-using a "
        "challenge, with stale timestamps",
        held_means="every replay is refused with the wrong-password answer and never a session; "
        "of two simultaneous sends at most one wins",
        bounds=Bounds(requests=200, seconds=200),
        quick_bounds=Bounds(requests=80, seconds=20),
        run=run_replay,
    ),
    Scenario(
        name="auth.packet-tamper",
        category="authentication",
        attacks="flipped bytes, swapped cids, truncation, odd members and wrong sealed contents "
        "in captured login packets carrying the right password",
        held_means="every altered packet is refused with the wrong-password answer and never "
        "a session",
        bounds=Bounds(requests=200, seconds=60),
        quick_bounds=Bounds(requests=120, seconds=25),
        run=run_tamper,
    ),
]
