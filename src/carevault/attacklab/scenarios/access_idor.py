"""IDOR sweeps: signed-in users ask for objects that are not theirs, by id.

The attacker first learns real ids the way an insider would: as the owner (doctor1 lists their
patients over /api/v1 and reads each record; doctor2 the same for theirs; patient2 opens their
home page, which links their appointment). Then, each from an address of their own:

- patient1 asks for patient2's and patient3's record, diagnosis page and lab file (web pages and
  /api/v1), and tries to cancel patient2's appointment;
- doctor2 asks for doctor1's patients (record, diagnosis page, lab file) and tries to write a
  note into their record (web form and API);
- labtech1 asks for records, diagnosis pages and tries to add a note or a diagnosis;
- doctor1, patient1 and labtech1 open the security officer's pages;
- patient1 and doctor2 ask for random (guessed) record and file ids.

Held: every one of these was refused (403/404/401, or a redirect to the login page; a page that
takes no id ignores one slipped into its query), no body held any of the victim's values that
the owner was shown, and nothing was written (the owner's read afterwards shows no attacker's
note and the appointment still open).
"""

from __future__ import annotations

import uuid

from carevault.attacklab.bounds import Bounds, Skip
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.client import Response

from ._access_common import Insider, Victim, ids_in, is_refusal, login, marker, phi_in_body, recon

SECURITY_PAGES = (
    "/security/",
    "/security/audit/",
    "/security/incidents/",
    "/security/responses/",
    "/security/users/",
    "/security/encryption/",
    "/security/risk-timeline.json",
)
CANCEL = "/clinic/me/appointments/"


class Tally:
    """What the sweep saw: refusals, answers that were not refused, PHI in bodies."""

    def __init__(self) -> None:
        self.tried = 0
        self.refused = 0
        self.statuses: dict[int, int] = {}
        self.answered: list[str] = []  # what was not refused (label; no PHI)
        self.leaked: dict[str, set[str]] = {}  # label -> victim values seen

    def check(self, label: str, response: Response, victim_phi: list[str]) -> None:
        self.tried += 1
        self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
        if is_refusal(response):
            self.refused += 1
        else:
            self.answered.append(f"{label} -> HTTP {response.status}")
        seen = phi_in_body(response.body, victim_phi)
        if seen:
            self.leaked.setdefault(label, set()).update(seen)

    def check_ignored(
        self, label: str, own: Response, forged: Response, victim_phi: list[str]
    ) -> None:
        """A page that takes no id, asked with one: it must show the same rows as without."""
        self.tried += 1
        self.statuses[forged.status] = self.statuses.get(forged.status, 0) + 1
        if is_refusal(forged) or (
            forged.status == own.status and forged.body.count(b"<tr") == own.body.count(b"<tr")
        ):
            self.refused += 1
        else:
            self.answered.append(f"{label} -> HTTP {forged.status}, other rows than without it")
        seen = phi_in_body(forged.body, victim_phi)
        if seen:
            self.leaked.setdefault(label, set()).update(seen)


def _reads(victim: Victim) -> list[str]:
    paths = [
        f"/api/v1/patients/{victim.patient_id}",
        f"/clinic/patients/{victim.patient_id}/",
        f"/diagnosis/patients/{victim.patient_id}/",
    ]
    paths += [f"/labs/files/{file_id}/" for file_id in victim.file_ids]
    return paths


def _note_writes(tally: Tally, who: str, attacker: Insider, victim: Victim, note: str) -> None:
    pid = victim.patient_id
    tally.check(
        f"{who}: web note into another's record",
        attacker.post_form(f"/clinic/patients/{pid}/notes/", {"body": note}),
        victim.phi,
    )
    tally.check(
        f"{who}: API note into another's record",
        attacker.post_json(f"/api/v1/patients/{pid}/notes", {"body": note}),
        victim.phi,
    )


def run(ctx: Context) -> Outcome:
    # -- reconnaissance, as the owners -----------------------------------------------------------
    doctor1 = login(ctx, "doctor1", 1)
    mine1 = recon(doctor1)  # patient1, patient2
    doctor2_owner = login(ctx, "doctor2", 2)
    mine2 = recon(doctor2_owner)  # patient3
    if len(mine1) < 2 or not mine2:
        raise Skip("the demo's care teams are not as expected (doctor1: 2 patients, doctor2: 1)")
    p1, p2, p3 = mine1[0], mine1[1], mine2[0]
    patient2 = login(ctx, "patient2", 3)
    home2 = patient2.get("/clinic/me/")
    appointments2 = ids_in(home2.body, CANCEL, "/cancel/")
    ctx.accounts.update({"patient1", "doctor2", "labtech1", "doctor1"})

    tally = Tally()
    note = marker(ctx, "idor-note")

    # -- patient1 -> patient2, patient3 ----------------------------------------------------------
    patient1 = Insider(ctx, "patient1", 10)
    for victim in (p2, p3):
        for path in _reads(victim):
            tally.check(
                f"patient1 GET {path.split('/')[1]} of another patient",
                patient1.get(path),
                victim.phi,
            )
    tally.check("patient1 lists patients", patient1.get("/api/v1/patients"), p2.phi + p3.phi)
    # The history page takes no id: one slipped into its query must be ignored (the same rows).
    own = patient1.get("/clinic/me/history/?mine=1")
    forged = patient1.get(
        f"/clinic/me/history/?mine=1&patient={p2.patient_id}&patient_id={p2.patient_id}"
    )
    tally.check_ignored("patient1 history with another's id", own, forged, p2.phi)
    for appointment in appointments2[:1]:
        tally.check(
            "patient1 cancels patient2's appointment",
            patient1.post_form(f"{CANCEL}{appointment}/cancel/", {}),
            p2.phi,
        )

    # -- doctor2 -> doctor1's patients -----------------------------------------------------------
    doctor2 = Insider(ctx, "doctor2", 11)
    for victim in (p1, p2):
        for path in _reads(victim):
            tally.check(
                f"doctor2 GET {path.split('/')[1]} of doctor1's patient",
                doctor2.get(path),
                victim.phi,
            )
    _note_writes(tally, "doctor2", doctor2, p1, note)

    # -- labtech1 -> diagnoses and notes ---------------------------------------------------------
    labtech = Insider(ctx, "labtech1", 12)
    for victim in (p1, p3) if not ctx.quick else (p2,):
        for path in _reads(victim)[:3]:  # lab files are the lab's own work: allowed by design
            tally.check(f"labtech1 GET {path.split('/')[1]} record", labtech.get(path), victim.phi)
    _note_writes(tally, "labtech1", labtech, p2, note)
    tally.check(
        "labtech1 API diagnosis",
        labtech.post_json(f"/api/v1/patients/{p2.patient_id}/diagnoses", {"features": [0.0] * 30}),
        p2.phi,
    )

    # -- non-officers -> the security pages ------------------------------------------------------
    pages = SECURITY_PAGES[:4] if ctx.quick else SECURITY_PAGES
    prober = Insider(ctx, "doctor1", 13)
    for who, client in (("doctor1", prober), ("patient1", patient1), ("labtech1", labtech)):
        for path in pages:
            tally.check(f"{who} GET {path}", client.get(path), p1.phi + p2.phi + p3.phi)

    # -- guessed ids -----------------------------------------------------------------------------
    everyone = p1.phi + p2.phi + p3.phi
    guesses = 2 if ctx.quick else 6
    for who, client in (("patient1", patient1), ("doctor2", doctor2)):
        for _ in range(guesses):
            guess = str(uuid.UUID(int=ctx.rng.getrandbits(128), version=4))
            for path in (
                f"/api/v1/patients/{guess}",
                f"/clinic/patients/{guess}/",
                f"/labs/files/{guess}/",
            ):
                tally.check(f"{who} GET a guessed id", client.get(path), everyone)

    # -- was anything written? (the owners read) -------------------------------------------------
    lost = 0
    findings: list[str] = []
    for victim in (p1, p2):
        page = doctor1.get(f"/clinic/patients/{victim.patient_id}/")
        if note in page.body.decode("utf-8", "replace"):
            lost += 1
            findings.append("an attacker's note was written into another doctor's patient's record")
    if appointments2:
        after = patient2.get("/clinic/me/")
        if appointments2[0] not in ids_in(after.body, CANCEL, "/cancel/"):
            lost += 1
            findings.append("patient1 cancelled patient2's appointment")

    ended = sum(i.sessions_ended for i in (patient1, doctor2, labtech, prober))
    if ended:
        findings.append(f"the server ended the attackers' sessions {ended} times (signed in again)")
    leaked_values = sorted({v for values in tally.leaked.values() for v in values})
    held = not tally.answered and not tally.leaked and lost == 0
    findings.insert(
        0,
        f"{tally.refused} of {tally.tried} cross-access requests refused "
        f"(statuses {dict(sorted(tally.statuses.items()))})",
    )
    findings += [f"not refused: {a}" for a in tally.answered[:10]]
    findings += [f"victim's PHI in the answer to: {label}" for label in sorted(tally.leaked)[:10]]
    return Outcome(
        held=held,
        defences=(["access policy"] if tally.refused else [])
        + (["session check"] if ended else []),
        leaked=len(leaked_values),
        lost=lost,
        findings=findings,
        metrics={
            "requests": tally.tried,
            "refused": tally.refused,
            "statuses": tally.statuses,
            "sessions_ended": ended,
        },
    )


SCENARIO = Scenario(
    name="access.idor",
    category="access",
    attacks="patients, a doctor and the lab technician ask for others' records, files, "
    "appointments and the security pages by id (learned as the owner, and guessed)",
    held_means="every cross-access request is refused, no body holds the victim's values, and "
    "nothing is written",
    bounds=Bounds(requests=400, seconds=90),
    quick_bounds=Bounds(requests=160, seconds=30),
    run=run,
    expect_detection=True,
)
