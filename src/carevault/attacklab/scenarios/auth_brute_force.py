"""Dictionary brute force against one account from one address.

The attacker sends wrong passwords from a dictionary as fast as the server answers, then the
right one (as if the dictionary had finally reached it). Held: the right password is refused
too, because the account is paused (back-off) or suspended by then, and the server checked no
more passwords than its suspension threshold.
"""

from __future__ import annotations

from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Bounds, Outcome, Scenario
from carevault.client import LoginFailed

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
    for guess in DICTIONARY * 3:
        if not ctx.within_bounds(reserve=4):
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
    try:
        attacker.login(VICTIM, ctx.password(VICTIM))
        accepted = True
    except (LoginFailed, RuntimeError) as exc:
        findings.append(f"the right password was refused: {exc}")
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
    if checked >= 1 and not accepted:
        defences.append("suspension")
    return Outcome(held=not accepted and paused > 0, defences=defences, findings=findings)


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
