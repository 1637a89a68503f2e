"""A tampered, replayed and rolled-back sealed diagnosis model on the live server's disk.

The attacker has write access to the data directory's ``models/`` (a stolen backup put back, a
compromised deploy job) and changes the sealed logistic model under the running server
(layout: ``models/diagnosis-logistic/v<N>/{manifest.json, manifest.sig, model.skops.enc}`` and
``high-water.enc``; modelguard/sealed.py, modelstore/store.py):

* **tamper**: one bit of the encrypted model flipped; one number of the signed manifest changed;
* **replay**: the forest's sealed files copied in as a newer logistic version;
* **hide the record**: the high-water record deleted (so a rollback could not be ruled out);
* **rollback** (full run): a newer version sealed with ``carevault model train``, then deleted so
  the older one would be served again.

After each change the referee waits for the server's model check (every 5 s), asks for a
diagnosis over the API (doctor2) and runs ``carevault model verify``. Held: every time, the
diagnosis endpoint either refuses (503) or keeps serving the verified version (never the
changed files), and ``model verify`` fails naming the model. Every change is undone afterwards
(the original files put back byte for byte), so later scenarios find the model as it was.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario

from . import _modeltools as tools

NAME = "diagnosis-logistic"
PROBE = "doctor2"
CHECK_WAIT = 5.6  # the service looks for changes every 5 s (modelguard/diagnosis.py)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_manifest(path: Path) -> None:
    text = path.read_text()
    # A number in the signed metadata (a metric, a range): what a forger would widen.
    for digit in "123456789":
        index = text.find(digit)
        if index >= 0:
            swapped = "1" if digit != "1" else "2"
            path.write_text(text[:index] + swapped + text[index + 1 :])
            return
    path.write_text(text + " ")


def run(ctx: Context) -> Outcome:
    files = ctx.need_files()
    root = files.data_dir / "models" / NAME
    if not (root / "v1").is_dir():
        return Outcome(held=False, findings=[f"no sealed {NAME} v1 in the lab's data directory"])
    ctx.honest_accounts.add(PROBE)  # the referee's probe: no response may touch it
    probe = ctx.honest_client(1)
    probe.login(PROBE, ctx.password(PROBE))
    pid = tools.patient_of(probe)
    # A different real case each time: the same case asked again and again is what the
    # extraction monitor rightly cuts off as a probe walking around one point.
    cases = iter([[float(v) for v in x] for x in tools.knowledge().X_eval[:20]])
    saved = Path(tempfile.mkdtemp(prefix="cv-model-"))
    shutil.copytree(root, saved / NAME, symlinks=True)

    def ask() -> tuple[int, int | None]:
        path = f"{tools.API_PATIENTS}/{pid}/diagnoses"
        case = next(cases)
        answer = probe.post_json(path, {"features": case, "model": "logistic"})
        if answer.status == 401:  # the session ended (an earlier scenario's response): again
            probe.login(PROBE, ctx.password(PROBE))
            answer = probe.post_json(path, {"features": case, "model": "logistic"})
        version = answer.json().get("version") if answer.status == 201 else None
        return answer.status, version

    def verify() -> tuple[bool, str]:
        done = files.cli("model", "verify", check=False)
        text = (done.stderr or done.stdout).strip().splitlines()
        return done.returncode != 0 and any(NAME in line for line in text), (text or [""])[-1]

    def restore() -> None:
        shutil.rmtree(root)
        shutil.copytree(saved / NAME, root, symlinks=True)

    findings: list[str] = []
    held = True
    serving = 1
    status, version = ask()
    if status != 201 or version is None:
        shutil.rmtree(saved, ignore_errors=True)
        return Outcome(held=False, findings=[f"the untouched model does not answer ({status})"])
    serving = int(version)
    attacks: list[tuple[str, Callable[[], object]]] = [
        ("flipped bit in the encrypted model", lambda: _flip(root / "v1" / "model.skops.enc", 99)),
        ("edited signed manifest", lambda: _edit_manifest(root / "v1" / "manifest.json")),
        (
            "forest files replayed as a newer logistic version",
            lambda: shutil.copytree(
                files.data_dir / "models" / "diagnosis-forest" / "v1", root / "v2"
            ),
        ),
        ("high-water record deleted", lambda: (root / "high-water.enc").unlink()),
    ]
    rolled = False
    try:
        for what, change in attacks:
            change()
            time.sleep(CHECK_WAIT)
            status, version = ask()
            refused, said = verify()
            served_ok = status == 503 or (status == 201 and version == serving)
            held &= served_ok and refused
            findings.append(
                f"{what}: diagnosis answered HTTP {status}"
                + (f" with v{version}" if version is not None else "")
                + f"; model verify {'FAILED as it should' if refused else 'PASSED'}"
                + ("" if served_ok else " — the changed model was served")
            )
            restore()
        if not ctx.quick:
            # A genuine newer version, then deleted: the older one must not come back.
            files.cli("model", "train", timeout=600)
            time.sleep(CHECK_WAIT)
            status, version = ask()
            newer = int(version or 0)
            if status == 201 and newer > serving:
                keep = Path(tempfile.mkdtemp(prefix="cv-model-new-"))
                shutil.copytree(root, keep / NAME, symlinks=True)
                shutil.rmtree(root / f"v{newer}")
                rolled = True
                time.sleep(CHECK_WAIT)
                status, version = ask()
                refused, said = verify()
                served_ok = status == 503 or (status == 201 and version == newer)
                held &= served_ok and refused
                findings.append(
                    f"v{newer} deleted to roll back to v{serving}: diagnosis answered HTTP "
                    f"{status}"
                    + (f" with v{version}" if version is not None else "")
                    + f"; model verify {'FAILED as it should' if refused else 'PASSED'}"
                )
                shutil.rmtree(root)
                shutil.copytree(keep / NAME, root, symlinks=True)
                shutil.rmtree(keep, ignore_errors=True)
                findings.append(
                    f"v{newer} (same recipe, same answers) left in place: putting v{serving} "
                    "back would itself be a rollback the signed checkpoint refuses"
                )
            else:
                findings.append(f"could not seal a newer version to roll back (HTTP {status})")
    finally:
        if not rolled:
            restore()
        shutil.rmtree(saved, ignore_errors=True)
    time.sleep(CHECK_WAIT)
    status, version = ask()
    ok, said = verify()
    if status != 201 or ok:
        held = False
        findings.append(
            f"after restoring, the model does not serve (HTTP {status}) or verify cleanly "
            f"(verify {'failed' if ok else 'ok'}: {said})"
        )
    else:
        findings.append(f"restored: the model verifies and serves v{version} again")
    return Outcome(
        held=held,
        defences=["signature", "AEAD check", "model seal"],
        lost=0,
        findings=findings,
    )


SCENARIO = Scenario(
    name="model.sealed-file",
    category="models",
    attacks="the sealed diagnosis model on the live server's disk: a flipped bit, an edited "
    "manifest, another model's files replayed as a new version, the high-water record deleted, "
    "a newer version deleted (rollback)",
    held_means="the server never serves the changed files (refuses, or keeps the verified "
    "version) and `carevault model verify` fails naming the model every time",
    bounds=Bounds(requests=60, seconds=180),
    quick_bounds=Bounds(requests=30, seconds=60),
    run=run,
    needs_files=True,
)
