"""Password spraying: one or two common passwords tried against many account names (the demo's
real names and guessed ones) from a few addresses, so that no single account sees more than two
failures and the per-account back-off never starts.

What is left to stop it are the per-address limits: failures for names that are no account
(faster than a person mistypes: ``LOGIN_ADDRESS_UNKNOWN_PER_MINUTE``), failures against too many
names (``LOGIN_ADDRESS_MAX_USERNAMES``) or too many failures (``LOGIN_ADDRESS_MAX_FAILURES``)
over the window. The scenario notes which fired: from the pauses it was answered with and, in
the lab, from the officer's list of blocked addresses (``carevault security status``).

Held: no sprayed password is accepted.
"""

from __future__ import annotations

from typing import Any

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario

from . import _auth_kit as kit

REAL = ("admin", "doctor2", "labtech1", "patient1", "patient2", "patient3")
SPRAYED = ("Winter2026!", "Welcome123!")


def run(ctx: Context) -> Outcome:
    rng = ctx.rng
    addresses = 2 if ctx.quick else 3
    guessed = kit.unknown_names(rng, 30 if ctx.quick else 60)
    ctx.accounts.update(REAL)
    clients = [ctx.client(n) for n in range(addresses)]
    plan = _plan(list(REAL), guessed, addresses, rng)
    per_address: list[dict[str, int]] = [{} for _ in clients]
    first_pause: list[int | None] = [None for _ in clients]
    accepted: list[str] = []
    tried = 0
    for password in SPRAYED[: 1 if ctx.quick else 2]:
        for which, name in plan:
            if not kit.going(ctx, 3):
                break
            result = kit.attempt(clients[which], name, password)
            tried += 1
            counts = per_address[which]
            counts[result.kind] = counts.get(result.kind, 0) + 1
            if result.kind == kit.ACCEPTED:
                accepted.append(name)
            if result.kind == kit.PAUSED and first_pause[which] is None:
                first_pause[which] = sum(counts.values())
    findings = [
        f"{tried} attempts ({len(REAL)} real names, {len(guessed)} guessed) from "
        f"{len(clients)} addresses"
    ]
    for n, counts in enumerate(per_address):
        paused = first_pause[n]
        findings.append(
            f"address {n}: "
            + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            + (f"; paused from attempt {paused}" if paused else "; never paused")
        )
    limits = _limits_fired(ctx, {c.address for c in clients})
    if limits:
        findings.append("limits that fired: " + "; ".join(sorted(set(limits))))
    if accepted:
        findings.append(f"{len(accepted)} sprayed passwords were accepted")
    paused_any = any(p is not None for p in first_pause)
    return Outcome(
        held=not accepted,
        defences=["throttle"] if paused_any else [],
        leaked=len(accepted),
        findings=findings,
        metrics={
            "attempts": tried,
            "answers_per_address": per_address,
            "paused_from_attempt": first_pause,
            "limits": sorted(set(limits)),
        },
    )


def _plan(real: list[str], guessed: list[str], addresses: int, rng: Any) -> list[tuple[int, str]]:
    """Which address tries which name, in order: the first address takes most of the names (a
    sprayer with one good box and a few spare ones), the others a share each."""
    names = real + guessed
    rng.shuffle(names)
    plan = []
    for i, name in enumerate(names):
        spare = addresses > 1 and i % 5 == 4
        plan.append((1 + (i // 5) % (addresses - 1) if spare else 0, name))
    return plan


def _limits_fired(ctx: Context, addresses: set[str]) -> list[str]:
    """The officer's reasons for blocking our addresses (lab only; [] elsewhere)."""
    if ctx.files is None:
        return []
    try:
        status: Any = ctx.files.cli_json("security", "status")
    except Exception:  # the officer's view is a bonus, not the verdict
        return []
    return [
        f"{b.get('evidence') or 'security layer'}: {b.get('reason', '')}"
        for b in status.get("blocked_addresses", [])
        if b.get("address") in addresses
    ]


SCENARIO = Scenario(
    name="auth.password-spraying",
    category="authentication",
    attacks="one or two common passwords against many real and guessed names from few addresses",
    held_means="no sprayed password is accepted (and the report names the limits that fired)",
    bounds=Bounds(requests=400, seconds=60),
    quick_bounds=Bounds(requests=120, seconds=35),
    run=run,
    expect_detection=True,
)
