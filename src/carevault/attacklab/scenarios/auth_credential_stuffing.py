"""Credential stuffing: (name, password) pairs from a breach of another site, tried from many
addresses, every request carrying forged X-Forwarded-For values.

The breach list holds every demo account's name once, with a password that is not its CareVault
password, and many names that are no account here. Most attacker addresses send a handful of
pairs each (low and slow: under every per-address limit); one address sends its share as fast
as the server answers, a new forged chain on every request (the lab's proxy hop appends the real
address to the right of it, as a hospital's load balancer does). The forged values include an
honest ward computer's address: an attacker who could get *that* blocked would lock a ward out.

Held: no pair is accepted; the fast address ends up paused (its block is counted under its real
address, and a fresh forged chain does not lift it); the addresses it forged are not paused (an
attacker-owned one that was only ever forged still gets the ordinary answer, and the honest ward
computer whose address was forged still signs in). Low-and-slow addresses are expected to stay
under the limits: there it is the account's own password, not a limit, that stops them (the
findings say so).
"""

from __future__ import annotations

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario

from . import _auth_kit as kit

HONEST = "doctor1"
BREACHED = ("admin", "doctor2", "labtech1", "patient1", "patient2", "patient3")
BREACH_PASSWORDS = (
    "Summer2024!", "Password123", "Welcome1!", "Qwerty!2345", "Hospital2025", "Ilovemycat7",
    "Football#10", "Liverpool99", "Sunshine2023", "Monkey!Bar12", "letmein2024", "Charlie!007",
)  # fmt: skip


def run(ctx: Context) -> Outcome:
    rng = ctx.rng
    findings: list[str] = []
    honest = ctx.honest_client(1)
    ctx.honest_accounts.add(HONEST)
    honest_ok_before = kit.attempt(honest, HONEST, ctx.password(HONEST)).kind == kit.ACCEPTED
    honest.logout()

    spread = 10 if ctx.quick else 24
    per_address = 3 if ctx.quick else 4
    names = list(BREACHED) + kit.unknown_names(rng, spread * per_address + 60)
    ctx.accounts.update(BREACHED)
    never_real = ctx.address(250)  # an address of ours that only ever appears forged
    forged_pool = [honest.address, never_real, "127.0.0.1", "10.0.0.1", "192.168.1.20"]
    pairs = [(name, rng.choice(BREACH_PASSWORDS)) for name in names]
    rng.shuffle(pairs)
    # The real names go to the low-and-slow addresses (each tried once, as a breach list has it).
    real = [p for p in pairs if p[0] in BREACHED]
    fake = [p for p in pairs if p[0] not in BREACHED]
    kinds: dict[str, int] = {}
    accepted: list[str] = []

    def note(kind: str, name: str) -> None:
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == kit.ACCEPTED:
            accepted.append(name)

    # Fast: one address, its share at full speed, a new forged chain each time (first, so
    # that a loaded machine spends its time on the check that matters).
    fast = ctx.client(0)
    fast_kinds: dict[str, int] = {}
    paused_after = None
    for count, (name, password) in enumerate(fake[-45:], start=1):
        if not kit.going(ctx, 12):
            break
        fast.forged = [rng.choice(forged_pool), f"198.51.100.{rng.randrange(1, 255)}"]
        kind = kit.attempt(fast, name, password).kind
        note(kind, name)
        fast_kinds[kind] = fast_kinds.get(kind, 0) + 1
        if kind == kit.PAUSED:
            paused_after = count
            break

    # Low and slow: many addresses, a few pairs each.
    queue = real + fake[:-45]
    for n in range(1, spread + 1):
        client = ctx.client(n, forged=[rng.choice(forged_pool)])
        for _ in range(per_address):
            if not queue or not kit.going(ctx, 20):
                break
            name, password = queue.pop(0)
            client.forged = [rng.choice(forged_pool), f"203.0.113.{rng.randrange(1, 255)}"]
            note(kit.attempt(client, name, password).kind, name)

    # Still paused under a brand-new forged chain (the real hop is what counts)?
    still_paused = False
    if paused_after is not None:
        fast.forged = ["10.77.0.99", "172.16.5.5"]
        still_paused = kit.attempt(fast, "x." + fake[0][0], "Hospital2025").kind == kit.PAUSED
    # The address that was only forged gets the ordinary answer, not the pause.
    framed = ctx.client(address=never_real)
    framed_kind = kit.attempt(framed, "z." + fake[1][0], "Hospital2025").kind
    # The honest ward computer whose address was forged still signs in.
    honest_ok_after = kit.attempt(honest, HONEST, ctx.password(HONEST)).kind == kit.ACCEPTED

    findings.append(
        f"{sum(kinds.values())} pairs tried from {spread + 1} addresses: "
        + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
    )
    if accepted:
        findings.append(f"{len(accepted)} breached pairs were accepted")
    if paused_after is not None:
        findings.append(
            f"the fast address was paused after {paused_after} pairs (forged headers ignored); "
            + ("still paused under a new forged chain" if still_paused else "NOT paused any more")
        )
    else:
        findings.append("the fast address was never paused within the bounds")
    findings.append(
        f"an address that was only ever forged got '{framed_kind}' "
        + ("(not blamed)" if framed_kind == kit.FAILED else "(blamed for the forger's attempts)")
    )
    findings.append(
        "the honest ward computer whose address was forged "
        + ("still signs in" if honest_ok_after else "could NOT sign in")
        + ("" if honest_ok_before else " (it could not sign in before the attack either)")
    )
    if kinds.get(kit.FAILED, 0) and paused_after is not None:
        findings.append(
            "the low-and-slow addresses stayed under the per-address limits: only the accounts' "
            "own passwords stopped them"
        )
    held = (
        not accepted
        and paused_after is not None
        and still_paused
        and framed_kind == kit.FAILED
        and honest_ok_after
    )
    defences = ["throttle"] if paused_after is not None else []
    return Outcome(
        held=held,
        defences=defences,
        leaked=len(accepted),
        findings=findings,
        metrics={
            "pairs": sum(kinds.values()),
            "addresses": spread + 1,
            "answers": kinds,
            "fast_address_paused_after": paused_after,
            "honest_signed_in": honest_ok_after,
        },
    )


SCENARIO = Scenario(
    name="auth.credential-stuffing",
    category="authentication",
    attacks="breached name/password pairs from many addresses with forged X-Forwarded-For",
    held_means=(
        "no pair is accepted; the fast address is paused under its real address, and no "
        "forged address (an honest ward computer's among them) is blamed"
    ),
    bounds=Bounds(requests=400, seconds=60),
    quick_bounds=Bounds(requests=200, seconds=40),
    run=run,
    expect_detection=True,
)
