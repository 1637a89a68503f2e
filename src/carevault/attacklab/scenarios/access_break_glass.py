"""Break-the-glass abuse: a doctor opens emergency access to patients outside their care, again
and again.

doctor1 finds doctor2's patient the way the product lets them (an exact MRN search, with the
MRN the attacker learned as doctor2), then posts the break-glass form: with no reason, with a
one-word reason, and then with plausible sentences, several times. A patient and the lab
technician post the same form. Afterwards the officer (if they can sign in with the password
alone) revokes the grants, so later scenarios find the care teams as the demo made them.

What the app defines (clinic/actions.py ``do_break_glass``): a doctor must give a clinical reason
of 15 characters or more; the grant is time-limited, written to the audit log with outcome
ALERT and shown in the patient's "who accessed my record"; there is no cap on the number of
grants, so repeated use is for the officer and the AI layer to notice.

Held: the form without a reason and the other roles are refused and open nothing, and every
grant the doctor obtained is in the patient's access history as emergency access. The report
says how many grants were given and whether the AI layer raised an incident (it should).
"""

from __future__ import annotations

import re
from typing import Any

from carevault.attacklab.bounds import Bounds, Skip
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.attacklab.target import AttackClient

from ._access_common import LOGIN_PATH, Insider, ids_in, is_refusal, login, recon

HISTORY_LABEL = "Opened emergency (break-glass) access"
REASONS = (
    "Unconscious patient in the emergency department, allergy check needed",
    "Covering the ward tonight, patient deteriorating, need medication list",
    "Urgent consult requested by the on-call team for acute chest pain",
)


def history_grants(pages: list[bytes]) -> int:
    """How many break-glass openings the patient's access-history pages list."""
    return sum(page.decode("utf-8", "replace").count(HISTORY_LABEL) for page in pages)


def named_incidents(activity: dict[str, Any] | None, username: str) -> int | None:
    """How many incidents in the server's record name ``username`` (None: not observable)."""
    if activity is None:
        return None
    titles = [str(i.get("title", "")) for i in activity.get("incidents", []) or []]
    return sum(1 for t in titles if re.search(rf"\b{re.escape(username)}\b", t))


def _grants_seen(client: AttackClient) -> int:
    pages = []
    for number in (1, 2, 3):
        answer = client.get(f"/clinic/me/history/?page={number}")
        if answer.status != 200:
            break
        pages.append(answer.body)
        if f"page={number + 1}" not in answer.body.decode("utf-8", "replace"):
            break
    return history_grants(pages)


def _revoke(ctx: Context, grants_before: set[str]) -> tuple[int, str]:
    """The officer revokes the grants this scenario made (if they can sign in)."""
    try:
        officer = login(ctx, "admin", 30)
    except Skip:
        return 0, "the officer could not sign in with the password alone; grants left to expire"
    page = officer.get("/security/")
    revoked = 0
    for grant in ids_in(page.body, "/security/break-glass/", "/revoke/"):
        if grant in grants_before or not ctx.within_bounds(reserve=1):
            continue
        answer = officer.post_form(f"/security/break-glass/{grant}/revoke/", {})
        revoked += answer.status in (200, 302, 303)
    return revoked, f"the officer revoked {revoked} of the grants"


def run(ctx: Context) -> Outcome:
    owner = login(ctx, "doctor2", 1)
    victims = recon(owner)
    if not victims:
        raise Skip("doctor2 has no patients")
    victim = victims[0]
    record = owner.get(f"/api/v1/patients/{victim.patient_id}").json()
    mrn = record["demographics"]["mrn"]
    ctx.accounts.update({"doctor1", "patient1", "labtech1"})
    patient = login(ctx, "patient3", 2)
    before = _grants_seen(patient)
    try:
        officer = login(ctx, "admin", 3)
        grants_before = set(
            ids_in(officer.get("/security/").body, "/security/break-glass/", "/revoke/")
        )
    except Skip:
        grants_before = set()
    findings: list[str] = []
    problems: list[str] = []

    doctor = Insider(ctx, "doctor1", 10, relogins=4)
    found = doctor.post_form("/clinic/doctor/", {"query": mrn})
    via_search = ids_in(found.body, "/clinic/patients/", "/break-glass/")
    target = via_search[0] if via_search else victim.patient_id
    if not is_refusal(doctor.get(f"/api/v1/patients/{target}")):
        problems.append("doctor1 read doctor2's patient before any break-glass")

    # Without a reason, and with one word: refused, nothing opened.
    for reason in ("", "urgent"):
        answer = doctor.post_form(f"/clinic/patients/{target}/break-glass/", {"reason": reason})
        opened = doctor.get(f"/api/v1/patients/{target}")
        granted_now = answer.status in (302, 303) and LOGIN_PATH not in answer.headers.get(
            "Location", ""
        )
        if granted_now or opened.status == 200:
            problems.append(f"break-glass with a {len(reason)}-character reason was granted")
    if not problems:
        findings.append("break-glass without a clinical reason was refused")

    # Other roles.
    for user, n in (("patient1", 11), ("labtech1", 12)):
        other = login(ctx, user, n)
        answer = other.post_form(f"/clinic/patients/{target}/break-glass/", {"reason": REASONS[0]})
        if not is_refusal(answer):
            problems.append(f"{user}'s break-glass post answered HTTP {answer.status}")

    # Repeated use with plausible reasons.
    uses = 6 if ctx.quick else 16
    granted = stopped = refused = 0
    for i in range(uses):
        if not ctx.within_bounds(reserve=12):
            break
        answer = doctor.post_form(
            f"/clinic/patients/{target}/break-glass/", {"reason": REASONS[i % len(REASONS)]}
        )
        where = answer.headers.get("Location", "")
        if answer.status in (302, 303) and LOGIN_PATH in where:
            stopped += 1  # the session was ended (the AI layer's answer)
        elif answer.status in (302, 303) and f"/clinic/patients/{target}" not in where:
            stopped += 1  # sent elsewhere (a step-up to the second factor): not a grant
        elif answer.status in (302, 303):
            granted += 1
            doctor.get(f"/api/v1/patients/{target}")  # the emergency read itself
        else:
            refused += 1
    findings.append(
        f"{granted} of {uses} reasoned break-glass requests granted, {refused} refused, "
        f"{stopped} answered by an ended session or a step-up"
    )
    if doctor.sessions_ended:
        findings.append(f"the server ended the doctor's session {doctor.sessions_ended} times")
    if granted and not refused:
        findings.append("the app sets no cap on repeated break-glass (alert-only, by design)")

    # Every grant in the patient's own access history.
    seen = _grants_seen(patient) - before
    if seen < granted:
        problems.append(f"{granted - seen} break-glass grants missing from the patient's history")
    elif granted:
        findings.append(f"all {granted} grants are in the patient's access history")
    doctor_incident = named_incidents(ctx.activity(), "doctor1")
    if granted and doctor_incident is not None:
        findings.append(
            f"the AI layer raised {doctor_incident} incident(s) naming the doctor after "
            f"{granted} emergency grants"
        )
    if granted:
        findings.append(_revoke(ctx, grants_before)[1])
    return Outcome(
        held=not problems,
        defences=["access policy", "input validation"]
        + (["session check"] if stopped or doctor.sessions_ended else []),
        findings=findings + problems,
        metrics={
            "granted": granted,
            "refused": refused,
            "stopped": stopped,
            "uses": uses,
            "doctor_incidents": doctor_incident,
        },
    )


SCENARIO = Scenario(
    name="access.break-glass-abuse",
    category="access",
    attacks="a doctor opens emergency access to another doctor's patient again and again "
    "(no reason, one word, then plausible reasons); other roles try the same",
    held_means="no reason or another role opens nothing, and every grant is audited where "
    "the patient sees it",
    bounds=Bounds(requests=150, seconds=60),
    quick_bounds=Bounds(requests=90, seconds=30),
    run=run,
    expect_detection=True,
)
