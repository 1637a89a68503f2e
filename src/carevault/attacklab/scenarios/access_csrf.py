"""Cross-site request forgery: state-changing posts riding a signed-in user's session cookie.

For each write a page or the API offers (a doctor's note, diagnosis, prescription, lab request,
appointment decision, the API note, break-the-glass; a patient's booking and cancellation; log
out and "log out everywhere"; the officer's user creation, unblocking and floor lowering when
the officer can sign in with the password alone), three forgeries are sent with the victim's
cookies: without the CSRF token and without an origin (a form on another site in a browser
that sends no Origin), without the token from a foreign Origin/Referer, and with a valid token
but a foreign Origin (a token leaked to another site).

Held: every forgery is refused with 403 and nothing was written: the owner's read afterwards
shows none of the forged values, the appointment is still open and undecided, and the sessions
are still signed in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

from carevault.attacklab.bounds import Bounds, Skip
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.attacklab.target import AttackClient
from carevault.client import Response

from ._access_common import ids_in, login, marker, recon

EVIL = "https://clinic-portal.example.net"
MODES = ("no token, no origin", "no token, foreign origin", "token, foreign origin")


def forge(
    client: AttackClient, path: str, fields: dict[str, str], mode: str, *, as_json: bool = False
) -> Response:
    """Post ``fields`` with the victim's cookies the way a forging page would (see MODES)."""
    headers: dict[str, str] = {}
    data = dict(fields)
    if mode != MODES[0]:
        headers["Origin"] = EVIL
        headers["Referer"] = EVIL + "/forms/"
    if mode == MODES[2]:
        token = client.csrf_token() or ""
        if as_json:
            headers["X-CSRFToken"] = token
        else:
            data["csrfmiddlewaretoken"] = token
    if as_json:
        headers["Content-Type"] = "application/json"
        body = json.dumps(data).encode()
    else:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urlencode(data).encode()
    return client.request("POST", path, body=body, headers=headers)


def _to_login(answer: Response) -> bool:
    return answer.status == 401 or "/accounts/login/" in answer.headers.get("Location", "")


@dataclass
class Target:
    label: str
    who: str
    path: str
    fields: dict[str, str]
    as_json: bool = False


def run(ctx: Context) -> Outcome:
    doctor1 = login(ctx, "doctor1", 1)
    patient1 = login(ctx, "patient1", 2)
    doctor2 = login(ctx, "doctor2", 3)
    ctx.accounts.update({"doctor1", "patient1", "doctor2"})
    victims = recon(doctor1)
    if not victims:
        raise Skip("doctor1 has no patients")
    p1 = victims[0].patient_id
    home = patient1.get("/clinic/me/")
    appointments = ids_in(home.body, "/clinic/me/appointments/", "/cancel/")
    decisions = ids_in(
        doctor1.get("/clinic/doctor/").body, "/clinic/doctor/appointments/", "/decide/"
    )
    clients = {"doctor1": doctor1, "patient1": patient1, "doctor2": doctor2}
    officer: AttackClient | None = None
    findings: list[str] = []
    try:
        officer = login(ctx, "admin", 4)
        clients["admin"] = officer
        ctx.accounts.add("admin")
    except Skip:
        findings.append(
            "the officer could not sign in with the password alone; officer forms skipped"
        )

    written: list[str] = []  # every forged value, to look for afterwards
    targets: list[Target] = []
    base = f"/clinic/patients/{p1}"
    for mode_index in range(len(MODES)):
        m = [marker(ctx, f"csrf{mode_index}-{i}") for i in range(7)]
        written += m
        targets.append(Target("note", "doctor1", f"{base}/notes/", {"body": m[0]}))
        targets.append(
            Target(
                "diagnosis",
                "doctor1",
                f"{base}/diagnoses/",
                {"code": "Z00.0", "description": m[1], "data_class": "ordinary"},
            )
        )
        targets.append(
            Target(
                "prescription",
                "doctor1",
                f"{base}/prescriptions/",
                {"drug": m[2], "dose": "1 mg", "instructions": "forged"},
            )
        )
        targets.append(Target("lab request", "doctor1", f"{base}/lab-requests/", {"test": m[3]}))
        targets.append(
            Target("API note", "doctor1", f"/api/v1/patients/{p1}/notes", {"body": m[4]}, True)
        )
        targets.append(
            Target(
                "break-glass",
                "doctor2",
                f"{base}/break-glass/",
                {"reason": f"Forged emergency access request {m[5]}"},
            )
        )
        targets.append(
            Target(
                "booking",
                "patient1",
                "/clinic/me/appointments/",
                {"doctor": "2", "starts_at": "2031-03-03T10:00", "reason": m[6]},
            )
        )
    for appointment in appointments[:1]:
        targets.append(
            Target("cancel", "patient1", f"/clinic/me/appointments/{appointment}/cancel/", {})
        )
    for appointment in decisions[:1]:
        targets.append(
            Target(
                "decide",
                "doctor1",
                f"/clinic/doctor/appointments/{appointment}/decide/",
                {"decision": "decline"},
            )
        )
    targets.append(Target("logout", "doctor1", "/accounts/logout/", {}))
    targets.append(
        Target("log out everywhere", "patient1", "/accounts/security/logout-everywhere/", {})
    )
    if officer is not None:
        targets.append(
            Target(
                "officer: new user",
                "admin",
                "/security/users/new/",
                {
                    "username": marker(ctx, "u").replace("-", "")[:20],
                    "display_name": "x",
                    "role": "admin",
                },
            )
        )
        targets.append(
            Target(
                "officer: unblock",
                "admin",
                "/security/blocked-addresses/unblock/",
                {"address": ctx.address(0)},
            )
        )
        targets.append(Target("officer: lower floor", "admin", "/security/floor/lower/", {}))

    # doctor2 may already hold emergency access from an earlier scenario: compare with before.
    open_before = doctor2.get(f"/api/v1/patients/{p1}").status == 200
    statuses: dict[int, int] = {}
    accepted: list[str] = []
    forged = ended = 0
    for i, target in enumerate(targets):
        # The per-mode targets cycle through the modes; the rest get every mode.
        modes = [MODES[i // 7]] if i < 7 * len(MODES) else list(MODES)
        for mode in modes:
            if not ctx.within_bounds(reserve=10):
                break
            answer = forge(
                clients[target.who], target.path, target.fields, mode, as_json=target.as_json
            )
            forged += 1
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            if answer.status in (401, 302) and _to_login(answer):
                ended += 1  # the AI layer had ended the victim's session: refused all the same
            elif answer.status != 403:
                accepted.append(f"{target.label} ({mode}) -> HTTP {answer.status}")

    # Was anything written, cancelled or decided? The owners read, in sessions of their own.
    lost = 0
    doctor1, patient1, doctor2 = (
        login(ctx, user, 5 + i) for i, user in enumerate(("doctor1", "patient1", "doctor2"))
    )
    reads = [
        doctor1.get(f"{base}/"),
        doctor1.get(f"/api/v1/patients/{p1}"),
        patient1.get("/clinic/me/"),
    ]
    found = {v for r in reads for v in written if v in r.body.decode("utf-8", "replace")}
    if found:
        lost += len(found)
        findings.append(f"{len(found)} forged values were written")
    if any(r.status != 200 for r in reads):
        findings.append("the owners' reads afterwards were refused; writes not verified")
    if appointments and appointments[0] not in ids_in(
        reads[2].body, "/clinic/me/appointments/", "/cancel/"
    ):
        findings.append("a forged cancellation cancelled the patient's appointment")
        lost += 1
    after = doctor1.get("/clinic/doctor/")
    if decisions and decisions[0] not in ids_in(
        after.body, "/clinic/doctor/appointments/", "/decide/"
    ):
        findings.append("a forged decision declined the doctor's pending appointment")
        lost += 1
    opened = doctor2.get(f"/api/v1/patients/{p1}")
    if opened.status == 200 and not open_before:
        findings.append("a forged break-glass opened the record")
        lost += 1

    findings.insert(
        0,
        f"{forged - len(accepted) - ended} of {forged} forged posts refused with 403 "
        f"(statuses {dict(sorted(statuses.items()))})",
    )
    if ended:
        findings.append(f"{ended} forged posts met a session the server had already ended")
    findings += [f"not refused with 403: {a}" for a in accepted[:10]]
    return Outcome(
        held=not accepted and lost == 0,
        defences=(["CSRF check"] if forged > len(accepted) + ended else [])
        + (["session check"] if ended else []),
        lost=lost,
        findings=findings,
        metrics={"forged": forged, "refused": forged - len(accepted), "statuses": statuses},
    )


SCENARIO = Scenario(
    name="access.csrf",
    category="access",
    attacks="state-changing posts (clinical writes, booking, cancellation, break-glass, logout, "
    "officer actions) with the victim's cookies but no token, or from a foreign origin",
    held_means="every forged post is refused with 403 and the owners' reads show nothing "
    "written, cancelled, decided or logged out",
    bounds=Bounds(requests=150, seconds=60),
    quick_bounds=Bounds(requests=100, seconds=30),
    run=run,
)
