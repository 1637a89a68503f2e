"""Break-the-glass abuse: a doctor opens emergency access to patients outside their care, again
and again.

doctor2 finds doctor1's patients the way the product lets them (an exact MRN search, with the
MRNs the attacker learned as doctor1), then posts the break-glass form: with no reason, with a
one-word reason, and then with a plausible sentence, alternating between the two patients
several times. A patient and the lab technician post the same form.

What the app defines (clinic/actions.py ``do_break_glass``): a doctor must give a clinical reason
of 15 characters or more; the grant is time-limited, written to the audit log with outcome
ALERT and shown in the patient's "who accessed my record"; there is no cap on the number of
grants, so repeated use is for the officer and the AI layer to notice.

Held: the form without a reason and the other roles are refused and open nothing, and every
grant the doctor obtained is in the patient's access history as emergency access. The report
says how many grants were given and whether the AI layer raised an incident (it should).
"""

from __future__ import annotations

from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Bounds, Outcome, Scenario, Skip
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


def run(ctx: Context) -> Outcome:
    owner = login(ctx, "doctor1", 1)
    victims = recon(owner)
    if len(victims) < 2:
        raise Skip("doctor1 has fewer than two patients")
    mrns = {}
    for victim in victims[:2]:
        record = owner.get(f"/api/v1/patients/{victim.patient_id}").json()
        mrns[victim.patient_id] = record["demographics"]["mrn"]
    ctx.accounts.update({"doctor2", "patient1", "labtech1"})
    owners = [login(ctx, name, 20 + i) for i, name in enumerate(("patient1", "patient2"))]
    before = [_grants_seen(patient) for patient in owners]
    findings: list[str] = []
    problems: list[str] = []

    doctor = Insider(ctx, "doctor2", 10, relogins=4)
    targets = []
    for victim in victims[:2]:
        found = doctor.post_form("/clinic/doctor/", {"query": mrns[victim.patient_id]})
        via_search = ids_in(found.body, "/clinic/patients/", "/break-glass/")
        targets.append(via_search[0] if via_search else victim.patient_id)
        if not is_refusal(doctor.get(f"/api/v1/patients/{victim.patient_id}")):
            problems.append("doctor2 read doctor1's patient before any break-glass")

    # Without a reason, and with one word: refused, nothing opened.
    for reason in ("", "urgent"):
        answer = doctor.post_form(f"/clinic/patients/{targets[0]}/break-glass/", {"reason": reason})
        opened = doctor.get(f"/api/v1/patients/{targets[0]}")
        granted_now = answer.status in (302, 303) and LOGIN_PATH not in answer.headers.get(
            "Location", ""
        )
        if granted_now or opened.status == 200:
            problems.append(f"break-glass with a {len(reason)}-character reason was granted")
    findings.append("break-glass without a clinical reason was refused")

    # Other roles.
    for user, n in (("patient1", 11), ("labtech1", 12)):
        other = login(ctx, user, n)
        answer = other.post_form(
            f"/clinic/patients/{targets[1]}/break-glass/", {"reason": REASONS[0]}
        )
        if not is_refusal(answer):
            problems.append(f"{user}'s break-glass post answered HTTP {answer.status}")

    # Repeated use with plausible reasons.
    uses = 6 if ctx.quick else 16
    granted = {t: 0 for t in targets}
    stopped = refused = 0
    for i in range(uses):
        if not ctx.within_bounds(reserve=12):
            break
        target = targets[i % len(targets)]
        answer = doctor.post_form(
            f"/clinic/patients/{target}/break-glass/", {"reason": REASONS[i % len(REASONS)]}
        )
        where = answer.headers.get("Location", "")
        if answer.status in (302, 303) and LOGIN_PATH in where:
            stopped += 1  # the session was ended (the AI layer's answer)
        elif answer.status in (302, 303):
            granted[target] += 1
            doctor.get(f"/api/v1/patients/{target}")  # the emergency read itself
        else:
            refused += 1
    total = sum(granted.values())
    if doctor.sessions_ended:
        findings.append(f"the server ended doctor2's session {doctor.sessions_ended} times")
    findings.append(
        f"{total} of {uses} reasoned break-glass requests granted, {refused} refused, "
        f"{stopped} answered by an ended session"
    )
    if total and not refused and not stopped:
        findings.append("the app sets no cap on repeated break-glass (alert-only, by design)")

    # Every grant in the patients' own access history.
    for patient, target, earlier in zip(owners, targets, before, strict=True):
        seen = _grants_seen(patient) - earlier
        if seen < granted[target]:
            problems.append(
                f"{granted[target] - seen} break-glass grants missing from a patient's history"
            )
    if total:
        findings.append("every grant is in the patient's access history as emergency access")
    return Outcome(
        held=not problems,
        defences=["access policy", "input validation"]
        + (["session check"] if stopped or doctor.sessions_ended else []),
        findings=findings + problems,
        metrics={"granted": total, "refused": refused, "stopped": stopped, "uses": uses},
    )


SCENARIO = Scenario(
    name="access.break-glass-abuse",
    category="access",
    attacks="a doctor opens emergency access to another doctor's patients again and again "
    "(no reason, one word, then plausible reasons); other roles try the same",
    held_means="no reason or another role opens nothing, and every grant is audited where "
    "the patient sees it",
    bounds=Bounds(requests=150, seconds=60),
    quick_bounds=Bounds(requests=80, seconds=30),
    run=run,
    expect_detection=True,
)
