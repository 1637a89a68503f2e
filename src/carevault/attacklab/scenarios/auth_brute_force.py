"""Dictionary brute force against one account from one address.

The attacker sends wrong passwords from a dictionary as fast as the server answers, then the
right one (as if the dictionary had finally reached it), from a second address whose challenges
are not spent, so that only the account's own state can refuse it. Held: the right password is
refused with the paused answer, because the account is paused (back-off) or suspended by then.
The two look the same from outside by design, so the scenario names the "throttle" (and
"rate limit" when the address ran out of challenges); a suspension it cannot see.

In the lab the account's back-off is cleared at the end (``carevault security lift``, as the
officer would): the runner lifts suspensions between scenarios, and a back-off left behind would
pause the next scenario's logins of the same account.
"""

from __future__ import annotations

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.client import LoginFailed

from . import _auth_kit as kit

VICTIM = "doctor2"
DICTIONARY = [
    "password", "123456", "letmein", "qwerty", "welcome1", "Password1", "hospital", "doctor",
    "admin123", "iloveyou", "sunshine", "monkey", "dragon", "football", "baseball", "master",
    "trustno1", "Summer2026!", "Winter2026!", "changeme", "secret", "princess", "shadow",
    "superman", "michael", "jennifer", "hunter2", "abc123", "passw0rd", "charlie",
]  # fmt: skip


def run(ctx: Context) -> Outcome:
    attacker = ctx.client()
    ctx.accounts.add(VICTIM)
    checked = paused = limited = 0
    findings = []
    for guess in (DICTIONARY * 3)[: 45 if ctx.quick else None]:
        if not kit.going(ctx, 4):
            break
        try:
            attacker.login(VICTIM, guess)
            findings.append(f"a wrong password {guess!r} was accepted")
            return Outcome(held=False, findings=findings)
        except LoginFailed as exc:
            if exc.retry_after:
                paused += 1
            else:
                checked += 1
        except RuntimeError:
            limited += 1  # no challenge: this address's challenges per minute are spent
    accepted = False
    right_paused = False
    try:
        ctx.client(1).login(VICTIM, ctx.password(VICTIM))
        accepted = True
        findings.append("the right password was ACCEPTED after the dictionary")
    except LoginFailed as exc:
        right_paused = exc.retry_after > 0
        findings.append(
            "the right password, from a fresh address, was refused: "
            + ("paused" if right_paused else "Login failed")
        )
    except RuntimeError as exc:
        findings.append(f"the right password could not be tried: {exc}")
    finally:
        if ctx.files is not None:
            ctx.files.cli("security", "lift", VICTIM, check=False)
    findings.insert(
        0,
        f"{checked} guesses answered 'Login failed', {paused} answered 'paused' (429), "
        f"{limited} got no challenge (rate limit)",
    )
    defences = []
    if paused:
        defences.append("throttle")
    if limited:
        defences.append("rate limit")
    return Outcome(
        held=not accepted and right_paused and paused > 0,
        defences=defences,
        leaked=int(accepted),
        findings=findings,
        metrics={"checked": checked, "paused": paused, "no_challenge": limited},
    )


SCENARIO = Scenario(
    name="auth.brute-force",
    category="authentication",
    attacks="a dictionary of passwords against one account from one address, then the right one",
    held_means="the right password is refused once the account is paused or suspended",
    bounds=Bounds(requests=400, seconds=60),
    quick_bounds=Bounds(requests=150, seconds=30),
    run=run,
    expect_detection=True,
)
