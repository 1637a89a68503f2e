"""SIGKILL of the server while an honest doctor writes notes, then an integrity walk.

The honest doctor writes notes in a loop (each with a unique marker); the lab kills the server
and both its workers at once (SIGKILL, no clean shutdown), starts it again, and the doctor
signs in again and writes a few more. Then every note the server had acknowledged (HTTP 201)
must be on the patient's page, decrypted, and the officer's walk on the live data directory must
pass: ``carevault backup check`` (every value decrypts, every signature verifies) and
``carevault audit verify`` (the chain and its anchors). Held: 0 lost, the walk passes, the
server serves again. Writes in flight at the kill were never acknowledged and are not counted.
"""

from __future__ import annotations

import time

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario

from ._rest import NoteWriter, doctor_session, integrity_walk, missing_notes, patient_ids


def run(ctx: Context) -> Outcome:
    files = ctx.need_files()
    server = ctx.need_server()
    doctor = doctor_session(ctx)
    patient = patient_ids(doctor)[0]
    tag = f"KS{ctx.rng.getrandbits(40):010x}"
    writer = NoteWriter(doctor, patient, tag)
    writer.start()
    time.sleep(1.5 if ctx.quick else 5.0)
    server.kill()
    killed_at = time.monotonic()
    time.sleep(0.3)
    writer.stop()
    server.start()
    restarted = time.monotonic() - killed_at
    again = doctor_session(ctx, 1)
    after = NoteWriter(again, patient, tag + "R")
    served_again = sum(after.write_one() for _ in range(3))
    markers = writer.acknowledged + after.acknowledged
    lost = missing_notes(again, patient, markers)
    walk = integrity_walk(files)
    check = walk["check"] if isinstance(walk["check"], dict) else {}
    findings = [
        f"{len(writer.acknowledged)} notes acknowledged before the kill, {writer.errors} cut "
        f"off in flight (never acknowledged: not counted), {writer.refused} refused",
        f"server back in {restarted:.1f} s; {served_again}/3 notes written after the restart",
        f"{len(markers) - len(lost)}/{len(markers)} acknowledged notes present and readable",
        "backup check: "
        + (
            "every record checks out"
            if walk["check_ok"]
            else f"FAILED ({', '.join(check.get('failures', [])[:3]) or walk['check']})"
        ),
        "audit verify: " + ("intact" if walk["audit_ok"] else f"BROKEN ({walk['audit']})"),
    ]
    held = not lost and walk["check_ok"] and walk["audit_ok"] and served_again == 3
    return Outcome(
        held=held and bool(writer.acknowledged),
        defences=["kill safety"] if held else [],
        lost=len(lost),
        findings=findings,
        metrics={
            "acknowledged": len(markers),
            "lost": len(lost),
            "in_flight": writer.errors,
            "restart_seconds": round(restarted, 2),
        },
    )


SCENARIO = Scenario(
    name="fault.kill-server",
    category="faults",
    attacks="SIGKILL of the server and its workers while an honest doctor writes notes",
    held_means="every acknowledged note survives and decrypts, backup check and audit verify "
    "pass, and the restarted server serves",
    bounds=Bounds(requests=0, seconds=180),
    quick_bounds=Bounds(requests=0, seconds=90),
    run=run,
    needs_files=True,
    needs_server_control=True,
)
