"""A stolen session cookie: used from another client, and kept after the owner logged out or
logged out everywhere.

The thief holds a copy of the victim's whole cookie jar (malware, a shared workstation's
profile, a leaked HAR file) and asks ``/api/v1/me`` who they are:

1. **From another client**: another address and User-Agent; another address with the victim's
   User-Agent; the victim's address with another User-Agent. The server binds each session to
   an HMAC of the client's User-Agent and address (login/sessions.py), so it should refuse
   the copy; what it does is reported as it is (refused and ended, step-up, or allowed),
   including what happens to the owner's own session afterwards.
2. **After logout**: a thief on the victim's own machine and browser identity (so the binding
   cannot tell them apart: only the session's end can) uses the copy while the owner is signed
   in, then again after the owner logs out.
3. **After "log out everywhere"** (``POST /accounts/security/logout-everywhere/``, on the
   account's security page): the owner is signed in on two devices, the thief holds a copy of
   the first device's cookies with its identity, and the owner logs out everywhere from the
   second device.

Held: the stolen copy stops working after logout and after "log out everywhere". The
other-client case is reported (``session check`` when refused), not part of the verdict: a
binding to address and User-Agent is a mitigation, and the brief is to say what it does.
"""

from __future__ import annotations

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.attacklab.target import AttackClient
from carevault.client import LoginFailed

from . import _auth_kit as kit

VICTIM = "patient2"
VICTIM_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) ward-browser"
THIEF_AGENT = "Mozilla/5.0 (X11; Linux x86_64) thief-browser"
LOGOUT_EVERYWHERE = "/accounts/security/logout-everywhere/"


def _victim(ctx: Context, n: int, agent: str = VICTIM_AGENT) -> AttackClient:
    client = ctx.client(n, user_agent=agent)
    client.login(VICTIM, ctx.password(VICTIM))
    return client


def _steal(ctx: Context, victim: AttackClient, n: int, agent: str) -> AttackClient:
    thief = ctx.client(n, user_agent=agent)
    kit.copy_cookies(victim, thief)
    return thief


def _answer(thief: AttackClient) -> tuple[str | None, str]:
    """Who the copy is signed in as, and how the server answered it."""
    response = thief.get(kit.ME)
    who = None
    text = f"HTTP {response.status}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status == 200 and isinstance(body, dict):
        who = str(body.get("username") or "") or None
        text = "allowed"
    elif isinstance(body, dict) and isinstance(body.get("error"), dict):
        text += f" {body['error'].get('code', '')}"
    return who, text


def run(ctx: Context) -> Outcome:
    ctx.accounts.add(VICTIM)
    findings: list[str] = []
    other_client: dict[str, str] = {}
    refused_other = 0
    try:
        # 1. Another client (a fresh victim session each time: a refusal ends the session).
        cases = [
            ("other address and User-Agent", 1, THIEF_AGENT),
            ("other address, the victim's User-Agent", 2, VICTIM_AGENT),
            ("the victim's address, other User-Agent", 0, THIEF_AGENT),
        ]
        for label, n, agent in cases:
            owner = _victim(ctx, 0)
            who, text = _answer(_steal(ctx, owner, n, agent))
            owner_after = kit.signed_in_as(owner)
            if who is None:
                refused_other += 1
            other_client[label] = text
            findings.append(
                f"copy used from {label}: {text}"
                + ("" if who is None else " (signed in as the victim)")
                + ("; the owner's session ended with it" if owner_after is None else "")
            )

        # 2. After logout: the thief has the victim's own identity (address and User-Agent).
        owner = _victim(ctx, 3)
        twin = _steal(ctx, owner, 3, VICTIM_AGENT)
        before_logout, _ = _answer(twin)
        owner.logout()
        after_logout, logout_text = _answer(twin)
        findings.append(
            "copy with the victim's identity: "
            + ("works" if before_logout else "refused")
            + " while the owner is signed in; after logout: "
            + ("STILL WORKS" if after_logout else logout_text)
        )

        # 3. After "log out everywhere" from a second device.
        first = _victim(ctx, 4)
        second = _victim(ctx, 5, "Mozilla/5.0 (iPad) ward-tablet")
        copy_of_first = _steal(ctx, first, 4, VICTIM_AGENT)
        before_everywhere, _ = _answer(copy_of_first)
        done = second.post_form(LOGOUT_EVERYWHERE, {})
        after_everywhere, everywhere_text = _answer(copy_of_first)
        first_after = kit.signed_in_as(first)
        findings.append(
            f"log out everywhere answered HTTP {done.status}; the copy "
            + ("worked" if before_everywhere else "was refused")
            + " before it, and after it: "
            + ("STILL WORKS" if after_everywhere else everywhere_text)
            + ("; the first device is signed out too" if first_after is None else "")
        )
    except LoginFailed as exc:
        # No verdict possible (an error, not a failed defence): nothing to steal.
        raise RuntimeError(f"the victim could not sign in ({exc}): nothing to steal") from exc
    held = after_logout is None and after_everywhere is None and before_logout is not None
    defences = ["session check"] if refused_other or held else []
    if before_logout is None:
        findings.append("the copy never worked, even before logout: the test proves nothing")
    return Outcome(
        held=held,
        defences=defences,
        leaked=0 if held else 1,
        findings=findings,
        metrics={
            "other_client": other_client,
            "other_client_refused": refused_other,
            "after_logout_works": after_logout is not None,
            "after_logout_everywhere_works": after_everywhere is not None,
        },
    )


SCENARIO = Scenario(
    name="auth.stolen-session",
    category="authentication",
    attacks="a copied session cookie from another client, after logout and after "
    "'log out everywhere'",
    held_means="the stolen cookie stops working after logout and after log out everywhere "
    "(what another client gets is reported)",
    bounds=Bounds(requests=100, seconds=30),
    quick_bounds=Bounds(requests=80, seconds=20),
    run=run,
)
