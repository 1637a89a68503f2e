"""The timing of a paused or suspended account's answers.

While sign-in is paused (the account's suspension or back-off, or the address's block) every
attempt is refused with the same words, whatever the password. If the server still checked the
password in the usual way, and only then refused, the *time* of the answer could say what the
words do not: a right password (an extra hash, a session, a second-factor step) or an existing
account (a real hash against no hash) would answer more slowly or faster. An attacker who
suspended an account by hammering it could go on guessing by the clock.

Two measurements (``labtech1`` is the victim; ``zz.`` names are no account):

A. **Paused by an address block** (over HTTP only): the attacker's address is blocked first,
   cheaply, with 20 packets for unknown challenges (the forged-packet limit), which leaves its
   challenges of the minute for the samples. Then rounds of three attempts, in a random order
   each round: the victim's right password, a wrong one, and an unknown name.
B. **A suspended account** (the lab only): suspending an account over HTTP takes 20 consecutive
   failures, which the back-off spreads over about 90 minutes, so the lab suspends it the way
   an officer's tooling would (``carevault manage shell`` on the lab's data directory; lifted
   again at the end). Then rounds of two attempts from a fresh, unblocked address: the right
   password and a wrong one.

The statistic (``_auth_kit.compare_timings``): each round gives a *paired* difference (right
minus wrong; existing minus unknown), so load on the shared machine that drifts over the run
cancels out. The figure reported is the median of the paired differences, next to its noise
(standard error from the MAD) and an exact sign test. "Distinguishable" needs all three of:
sign test p < 0.001, |median| > 4 x noise, and |median| >= 2 ms. That is deliberately
conservative so that the scenario is not flaky on a loaded machine: it flags a difference of the
size a real leak has (a whole Argon2 hash, tens of milliseconds; or a session being written),
and does not claim anything about sub-millisecond differences that only very many samples could
show (the figures are reported either way, for the officer to judge).

A power check runs last: a failed login for an unknown name (one password hash) against a
packet refused before any hash, paired the same way. The test should call that distinguishable;
if it does not (a machine too loaded to measure), the findings say the figures are
inconclusive. It is reported, not part of the verdict, so that load cannot make the scenario
fail.

Held: every answer in a measurement has the same status and the same body (after setting aside
the seconds to wait, which count down with the block; they must agree within a second inside a
round), no attempt was accepted, and no comparison is distinguishable.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.attacklab.target import AttackClient
from carevault.crypto.packets import b64url

from . import _auth_kit as kit

VICTIM = "labtech1"
FORGED_LIMIT = 20  # LOGIN_ADDRESS_MAX_FORGED_PACKETS
CHALLENGES = 60  # LOGIN_CHALLENGES_PER_MINUTE
# Rounds per measurement in the quick run: enough for the exact sign test to reach p < 0.001
# (2 / 2**12) when every round agrees, few enough to stay within seconds.
ROUNDS_QUICK = 12


def normalised(body: bytes) -> tuple[Any, int]:
    """The answer's body without its countdown (the message and JSON with ``retry_after``
    taken out), and the countdown."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body, 0
    if not isinstance(answer, dict):
        return answer, 0
    wait = answer.pop("retry_after", 0)
    return json.dumps(answer, sort_keys=True), wait if isinstance(wait, int) else 0


class Samples:
    def __init__(self, classes: list[str]) -> None:
        self.times: dict[str, list[float]] = {c: [] for c in classes}
        self.answers: set[tuple[int, Any]] = set()
        self.kinds: dict[str, int] = {}
        self.countdown_spread = 0
        self.accepted = 0

    def round(self, results: dict[str, kit.Attempt]) -> None:
        waits = []
        for name, result in results.items():
            self.times[name].append(result.seconds)
            body, wait = normalised(result.body)
            self.answers.add((result.status, body))
            waits.append(wait)
            self.kinds[result.kind] = self.kinds.get(result.kind, 0) + 1
            self.accepted += result.kind == kit.ACCEPTED
        self.countdown_spread = max(self.countdown_spread, max(waits) - min(waits))

    @property
    def rounds(self) -> int:
        return min((len(t) for t in self.times.values()), default=0)

    @property
    def identical(self) -> bool:
        return len(self.answers) == 1 and self.countdown_spread <= 1


def _measure(
    ctx: Context,
    clients: list[AttackClient],
    attempts: dict[str, tuple[str, str]],
    rounds_each: int,
) -> Samples:
    """Rounds of one attempt of each kind, in a random order each round, from each client in
    turn (a client's challenges of the minute bound its rounds)."""
    samples = Samples(list(attempts))
    order = list(attempts)
    for client in clients:
        for _ in range(rounds_each):
            if not kit.going(ctx, 2 * len(order) + 2):
                return samples
            ctx.rng.shuffle(order)
            results = {}
            for name in order:
                user, password = attempts[name]
                result = kit.attempt(client, user, password)
                if result.kind == kit.NO_CHALLENGE:
                    break
                results[name] = result
            if len(results) < len(order):
                break
            samples.round(results)
    return samples


def _junk() -> dict[str, str]:
    """A well-formed packet for a challenge that was never issued (refused before any hash)."""
    return {
        "cid": b64url(secrets.token_bytes(16)),
        "epk": b64url(b"\x04" + secrets.token_bytes(64)),
        "iv": b64url(secrets.token_bytes(12)),
        "ct": b64url(secrets.token_bytes(48)),
    }


def _block(ctx: Context, client: AttackClient) -> bool:
    """Block ``client``'s address with packets for challenges that were never issued."""
    for _ in range(FORGED_LIMIT + 5):
        if not kit.going(ctx, 10):
            return False
        if kit.send(client, _junk()).kind == kit.PAUSED:
            return True
    return False


def _control(ctx: Context, client: AttackClient, rounds: int) -> kit.TimingVerdict:
    """The test's power on this machine now: a failed login for an unknown name (one password
    hash) against a packet refused before any hash, paired per round. Both answer "Login
    failed."; a test that cannot tell these apart could not see a leaked hash either."""
    hashed: list[float] = []
    unhashed: list[float] = []
    for i in range(rounds):
        if not kit.going(ctx, 4):
            break
        one = kit.attempt(client, f"zz.control.{ctx.rng.randrange(10**6)}.{i}", "Wrong-pass-1")
        two = kit.send(client, _junk())
        if one.kind != kit.FAILED or two.kind != kit.FAILED:
            break
        hashed.append(one.seconds)
        unhashed.append(two.seconds)
    return kit.compare_timings(hashed, unhashed)


def _suspend(ctx: Context, on: bool) -> bool:
    files = ctx.files
    if files is None:
        return False
    if not on:
        files.cli("security", "lift", VICTIM, check=False)
        return True
    code = (
        "from django.utils import timezone\n"
        "from carevault.web.accounts.models import User\n"
        f"n = User.objects.filter(username={VICTIM!r}).update(suspended_at=timezone.now(), "
        "suspension_reason='attack lab: the suspended-timing scenario')\n"
        "print(n)\n"
    )
    done = files.cli("manage", "shell", "-v", "0", "-c", code, check=False)
    return done.returncode == 0 and done.stdout.strip().endswith("1")


def run(ctx: Context) -> Outcome:
    password = ctx.password(VICTIM)
    ctx.accounts.add(VICTIM)
    rng = ctx.rng
    unknown = f"zz.{rng.randrange(10**6)}.nobody"
    wrong = f"Wrong-{rng.randrange(10**6)}-pass"
    findings: list[str] = []
    verdicts: list[kit.TimingVerdict] = []
    identical = True
    accepted = 0
    metrics: dict[str, Any] = {}

    # A. Paused by an address block.
    blocked = [ctx.client(n) for n in ((0,) if ctx.quick else (0, 2, 3))]
    blocked = [client for client in blocked if _block(ctx, client)]
    if blocked:
        attempts = {
            "right": (VICTIM, password),
            "wrong": (VICTIM, wrong),
            "unknown": (unknown, wrong),
        }
        a = _measure(ctx, blocked, attempts, ROUNDS_QUICK if ctx.quick else (CHALLENGES - 2) // 3)
        pairs = [
            ("right", "wrong", "right vs wrong password"),
            ("wrong", "unknown", "existing vs unknown name"),
        ]
        identical &= a.identical and set(a.kinds) == {kit.PAUSED}
        accepted += a.accepted
        findings.append(
            f"A ({len(blocked)} address(es) blocked): {a.rounds} rounds; answers "
            + ", ".join(f"{v} {k}" for k, v in sorted(a.kinds.items()))
            + ("; all identical" if a.identical else f"; {len(a.answers)} different answers")
        )
        for first, second, label in pairs:
            verdict = kit.compare_timings(a.times[first], a.times[second])
            verdicts.append(verdict)
            findings.append("A " + verdict.describe(*label.split(" vs ")))
            metrics[f"A {label} ms"] = round(verdict.median_difference * 1000, 3)
        metrics["A rounds"] = a.rounds
    else:
        findings.append("A: no address could be blocked within the bounds")
        identical = False

    # B. A suspended account, from an unblocked address.
    if ctx.files is not None and kit.going(ctx, 20):
        if _suspend(ctx, True):
            try:
                b = _measure(
                    ctx,
                    [ctx.client(n) for n in ((1,) if ctx.quick else (1, 4))],
                    {"right": (VICTIM, password), "wrong": (VICTIM, wrong)},
                    ROUNDS_QUICK if ctx.quick else (CHALLENGES - 2) // 2,
                )
            finally:
                _suspend(ctx, False)
            identical &= b.identical and set(b.kinds) == {kit.PAUSED}
            accepted += b.accepted
            findings.append(
                f"B (account suspended): {b.rounds} rounds; answers "
                + ", ".join(f"{v} {k}" for k, v in sorted(b.kinds.items()))
                + ("; all identical" if b.identical else f"; {len(b.answers)} different answers")
            )
            verdict = kit.compare_timings(b.times["right"], b.times["wrong"])
            verdicts.append(verdict)
            findings.append("B " + verdict.describe("right", "wrong"))
            metrics["B right vs wrong password ms"] = round(verdict.median_difference * 1000, 3)
            metrics["B rounds"] = b.rounds
        else:
            findings.append("B: could not suspend the victim in the lab's database")
    else:
        findings.append("B: not run (needs the lab's data directory to suspend the victim)")

    # The power check (reported; it does not decide the verdict, see the module docstring).
    if kit.going(ctx, 30):
        control = _control(ctx, ctx.client(5), ROUNDS_QUICK)
        findings.append(
            "power check: "
            + control.describe("one hash", "no hash")
            + ("" if control.distinguishable else " (so the figures above are inconclusive)")
        )
        metrics["control one hash vs none ms"] = round(control.median_difference * 1000, 3)
        metrics["control distinguishable"] = control.distinguishable

    distinguishable = [v for v in verdicts if v.distinguishable]
    held = bool(verdicts) and identical and not accepted and not distinguishable
    return Outcome(
        held=held,
        defences=["suspension", "throttle"] if held else [],
        leaked=accepted + len(distinguishable),
        findings=findings,
        metrics=metrics,
    )


SCENARIO = Scenario(
    name="auth.suspended-timing",
    category="authentication",
    attacks="the time of a paused or suspended account's answers: right vs wrong password, "
    "existing vs unknown name",
    held_means="the answers are identical in status and body and no timing difference is "
    "distinguishable by a conservative paired test",
    bounds=Bounds(requests=800, seconds=120),
    quick_bounds=Bounds(requests=300, seconds=45),
    run=run,
)
