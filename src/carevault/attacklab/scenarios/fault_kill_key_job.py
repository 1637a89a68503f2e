"""SIGKILL of a key job mid-way on the live lab, resumed while the server keeps serving.

An honest doctor writes notes before and throughout. The officer's key jobs run on the live
data directory and kill themselves (SIGKILL) at a unit of work chosen from the seed
(``CAREVAULT_FAULT_KILL_AFTER=N``, see :mod:`carevault.faults`): ``keys reencrypt --to
HYBRID-X25519-AES-256-GCM`` (every value and file re-encrypted, in batches) and ``keys rotate``
(the master key rotated, every data key rewrapped). Each is run again to completion (resume),
then ``keys sweep``; then the integrity walk: ``backup check``, ``audit verify``, and the doctor
reads back every note the server acknowledged. Held: 0 lost, 0 unreadable, every resume
finished, the server kept serving.
"""

from __future__ import annotations

import signal
import time

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario

from ._rest import NoteWriter, doctor_session, integrity_walk, missing_notes, patient_ids

JOBS = {
    "reencrypt": (("keys", "reencrypt", "--to", "HYBRID-X25519-AES-256-GCM", "--batch", "5"), 40),
    "rotate": (("keys", "rotate"), 4),
}


def run(ctx: Context) -> Outcome:
    files = ctx.need_files()
    ctx.need_server()
    doctor = doctor_session(ctx)
    patient = patient_ids(doctor)[0]
    tag = f"KJ{ctx.rng.getrandbits(40):010x}"
    writer = NoteWriter(doctor, patient, tag, pause=0.1)
    for _ in range(3):
        writer.write_one()
    writer.start()
    findings: list[str] = []
    resumed_ok = True
    killed = 0
    for name, (args, most) in JOBS.items():
        kill_after = ctx.rng.randint(2, most)
        started = time.monotonic()
        first = files.cli(
            *args, env={"CAREVAULT_FAULT_KILL_AFTER": str(kill_after)}, check=False, timeout=300
        )
        was_killed = first.returncode == -signal.SIGKILL
        killed += was_killed
        second = files.cli(*args, check=False, timeout=300)
        resumed_ok = resumed_ok and second.returncode == 0
        tail = (second.stderr or second.stdout).strip().splitlines()[-1:] or [""]
        findings.append(
            f"keys {name}: "
            + (
                f"SIGKILLed at unit {kill_after}"
                if was_killed
                else "finished before the kill point"
            )
            + (
                ", resumed to completion"
                if second.returncode == 0
                else f", resume FAILED ({tail[0][:80]})"
            )
            + f" ({time.monotonic() - started:.1f} s)"
        )
    sweep = files.cli("keys", "sweep", check=False, timeout=120)
    writer.stop()
    markers = writer.acknowledged
    lost = missing_notes(doctor, patient, markers)
    walk = integrity_walk(files)
    check = walk["check"] if isinstance(walk["check"], dict) else {}
    unreadable = int(check.get("failed_values", 0)) + int(check.get("failed_signatures", 0))
    findings += [
        f"the honest doctor wrote {len(markers)} notes during the jobs ({writer.refused} refused, "
        f"{writer.errors} failed); {len(markers) - len(lost)} present and readable",
        "backup check: "
        + (
            f"every record checks out ({check.get('values', '?')} values)"
            if walk["check_ok"]
            else f"FAILED: {unreadable} unreadable ({', '.join(check.get('failures', [])[:3])})"
        ),
        "audit verify: " + ("intact" if walk["audit_ok"] else f"BROKEN ({walk['audit']})"),
        "keys sweep: " + ("ok" if sweep.returncode == 0 else "failed"),
    ]
    served = writer.refused == 0 and writer.errors == 0 and len(markers) > 3
    if not served:
        findings.append("the server did not serve every honest write while the jobs ran")
    held = (
        not lost
        and not unreadable
        and walk["check_ok"]
        and walk["audit_ok"]
        and resumed_ok
        and served
        and killed > 0
    )
    return Outcome(
        held=held,
        defences=["kill safety"] if held else [],
        lost=len(lost),
        findings=findings,
        metrics={
            "jobs_killed": killed,
            "acknowledged": len(markers),
            "lost": len(lost),
            "unreadable": unreadable,
        },
    )


SCENARIO = Scenario(
    name="fault.kill-key-job",
    category="faults",
    attacks="SIGKILL of keys reencrypt and keys rotate mid-way on the live data, resumed while "
    "the server serves an honest doctor",
    held_means="every resume finishes, every record decrypts and verifies, the audit chain "
    "verifies, the doctor reads every acknowledged note",
    bounds=Bounds(requests=0, seconds=240),
    quick_bounds=Bounds(requests=0, seconds=120),
    run=run,
    needs_files=True,
    needs_server_control=True,
)
