"""``carevault bench killsafety``: SIGKILL the key jobs at many instants, resume, and count what
was lost (issue 13).

One data directory is seeded (the demo, plus more patients, lab files and outbox messages, its
values and files sealed under AES-128-GCM so that re-encryption has work to do) and its every
sealed value, lab file, signature, outbox message and wrapped key recorded. Then, for each kill
point, a copy of it is given to a job that kills itself (``CAREVAULT_FAULT_KILL_AFTER=N``, see
:mod:`carevault.faults`) at its N-th unit of work: ``keys reencrypt --to
HYBRID-X25519-AES-256-GCM`` or ``keys rotate``. The same command is run again to resume it,
``keys sweep`` removes leftovers, and everything is walked again:

* **lost**: a value, file or message that is missing or no longer holds what it held;
* **tampered**: one that does not authenticate (or a signature that no longer verifies);
* **resume failures**: a resumed job that did not finish cleanly (a failure count, a busy lease);
* **extra master versions**: a resumed rotation that added a version instead of finishing its own.

Each job runs in a forked child of this process (Django is imported once), so the kill is a real
SIGKILL of a real process, and hundreds of points take minutes, not hours.

The benchmark does not import the command line (which sits above it and runs it): the command
line hands in what it needs, as a :class:`CommandLine`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGET = "HYBRID-X25519-AES-256-GCM"
BATCH = "7"  # records per batch: small, so a run crosses many commits
EXTRA_PATIENTS = 8
QUICK_PATIENTS = 2  # --quick: the bounded run of the normal test suite
OUTBOX_MESSAGES = 4
JOBS: dict[str, list[str]] = {
    "reencrypt": ["keys", "reencrypt", "--to", TARGET, "--batch", BATCH],
    "rotate": ["keys", "rotate"],
}


@dataclass(frozen=True)
class CommandLine:
    """What the benchmark takes from ``carevault``: ``main`` runs ``carevault ARGV`` (its exit
    status), ``key_stores`` lists where wrapped keys live (``keys status`` and ``keys rotate``
    walk the same), as (label, store) pairs."""

    main: Callable[[Sequence[str]], int]
    key_stores: Callable[[], list[tuple[str, Any]]]


_ENV_CLEARED = (
    "DATABASE_URL",
    "CAREVAULT_MASTER_KEY",
    "CAREVAULT_MASTER_KEY_FILE",
    "CAREVAULT_MODE",
    "CAREVAULT_EMAIL_HOST",
)


# -- running things in a child ----------------------------------------------------------------


def _in_child(work: Callable[[], Any], env: dict[str, str] | None = None) -> tuple[int, Any]:
    """Run ``work`` in a forked child; (signal that killed it or 0, what it returned)."""
    from django.db import connections

    connections.close_all()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        code = 0
        try:
            os.environ.update(env or {})
            result = work()
            payload = json.dumps({"ok": True, "result": result}).encode()
        except BaseException as exc:  # reported to the parent, never raised across the fork
            payload = json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}).encode()
            code = 1
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as src:
        raw = src.read()
    _, status = os.waitpid(pid, 0)
    killed = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    if killed:
        return killed, None
    doc = json.loads(raw or b"{}")
    if not doc.get("ok"):
        raise RuntimeError(f"kill-safety child failed: {doc.get('error', 'no answer')}")
    return 0, doc["result"]


def _quiet_main(cli: CommandLine, argv: list[str]) -> int:
    """``carevault ARGV`` with its output discarded (the bench prints its own)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return cli.main(argv)


# -- the data set -----------------------------------------------------------------------------


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _prepare(cli: CommandLine, patients: int) -> dict[str, Any]:
    password = "Kb-" + secrets.token_urlsafe(12)  # never used to sign in: the data is scratch
    if _quiet_main(cli, ["demo", "--seed-only", "--password", password]) != 0:
        raise RuntimeError("could not seed the demo data")
    _populate(patients)
    _downgrade()
    return _snapshot()


def _populate(patients: int) -> None:
    from django.core import mail

    from carevault.web import demo
    from carevault.web.accounts.models import User
    from carevault.web.clinic import actions as clinic
    from carevault.web.clinic.models import DataClass
    from carevault.web.labs import actions as labs

    admin = User.objects.get(username="admin")
    doctor = User.objects.get(username="doctor1")
    tech = User.objects.get(username="labtech1")
    for i in range(patients):
        patient = clinic.do_create_patient(
            admin,
            name=f"Bench Patient {i:03d}",
            birth_date=dt.date(1950 + i, 1 + i % 12, 1 + i % 27),
            email=f"bench{i}@example.org",
            phone=f"+1-555-02{i:02d}",
            address=f"{i} Bench Street",
        )
        clinic.do_assign_doctor(admin, doctor, patient)
        clinic.do_add_diagnosis(
            doctor, patient, code="R51", description=f"Headache {i}", data_class=DataClass.ORDINARY
        )
        clinic.do_add_note(doctor, patient, body=f"Follow-up note {i}")
        clinic.do_prescribe(
            doctor, patient, drug="Paracetamol", dose=f"{500 + i} mg", instructions="As needed"
        )
        request = labs.do_request_lab_test(doctor, patient, test=f"Panel {i}")
        uploads = [
            labs.upload_from_bytes(
                f"report-{i}-{n}.pdf", "application/pdf", demo.DEMO_PDF + f"% {i}-{n}\n".encode()
            )
            for n in range(2)
        ]
        labs.do_submit_lab_result(
            tech, request, values=f"Value {i}", comment=f"Comment {i}", uploads=uploads
        )
    for n in range(OUTBOX_MESSAGES):
        mail.send_mail(
            f"Message {n}", f"Body {n}", "carevault@example.org", [f"patient{n}@example.org"]
        )


def _downgrade() -> None:
    """Seal every value and file under AES-128-GCM (below the job's target)."""
    from carevault.crypto import Suite
    from carevault.web.labs import storage
    from carevault.web.labs.models import LabFile
    from carevault.web.vault import reencrypt, service

    weak = Suite.AES_128_GCM
    for model in reencrypt.phi_models():
        table = model._meta.db_table
        for row in model._default_manager.all():
            patient_id = row.phi_patient_id()
            updates = {}
            for column in model.PHI_FIELDS:
                old = bytes(getattr(row, f"{column}_enc") or b"")
                if old:
                    context = service.field_context(table, column, row.pk, patient_id)
                    ring = service.keyring_for(patient_id, weak)
                    updates[f"{column}_enc"] = ring.reencrypt(old, context, suite=weak)
            if updates:
                model._default_manager.filter(pk=row.pk).update(**updates)
    for lab_file in LabFile.objects.all():
        new = storage.reencrypt(lab_file.patient_id, lab_file.pk, lab_file.storage_name, weak)
        LabFile.objects.filter(pk=lab_file.pk).update(storage_name=new)
        storage.remove(lab_file.storage_name)


def _snapshot() -> dict[str, Any]:
    """What every sealed thing holds now (digests of plaintexts)."""
    from carevault.web.accounts.outbox import read_outbox
    from carevault.web.labs import storage
    from carevault.web.labs.models import LabFile
    from carevault.web.vault import reencrypt

    values: dict[str, str] = {}
    for model in reencrypt.phi_models():
        for row in model._default_manager.all():
            for column in model.PHI_FIELDS:
                if getattr(row, f"{column}_enc"):
                    values[f"{model._meta.db_table}|{row.pk}|{column}"] = _sha(row.unseal(column))
    files = {
        str(f.pk): storage.plaintext_digest(f.patient_id, f.pk, f.storage_name)[0]
        for f in LabFile.objects.all()
    }
    outbox = {m.name: _sha(m.body + m.subject) for m in read_outbox()}
    return {"values": values, "files": files, "outbox": outbox}


# -- the check --------------------------------------------------------------------------------


def _check(cli: CommandLine, snapshot: dict[str, Any]) -> dict[str, Any]:
    """Walk every sealed value, file, signature, message and wrapped key against ``snapshot``."""
    from carevault.crypto import CryptoError
    from carevault.web.accounts.outbox_store import OutboxKeyStore
    from carevault.web.clinic.actions import prescription_status
    from carevault.web.clinic.models import Prescription
    from carevault.web.labs import storage
    from carevault.web.labs.actions import result_status
    from carevault.web.labs.models import LabFile, LabResult
    from carevault.web.vault import reencrypt, service

    lost: list[str] = []
    tampered: list[str] = []
    seen: set[str] = set()
    for model in reencrypt.phi_models():
        for row in model._default_manager.all():
            for column in model.PHI_FIELDS:
                key = f"{model._meta.db_table}|{row.pk}|{column}"
                if not getattr(row, f"{column}_enc"):
                    continue
                seen.add(key)
                try:
                    plain = row.unseal(column)
                except CryptoError:
                    tampered.append(key)
                    continue
                if snapshot["values"].get(key, _sha(plain)) != _sha(plain):
                    lost.append(key)
    lost += sorted(set(snapshot["values"]) - seen)
    files_seen = 0
    for lab_file in LabFile.objects.all():
        files_seen += 1
        try:
            digest, _ = storage.plaintext_digest(
                lab_file.patient_id, lab_file.pk, lab_file.storage_name
            )
        except OSError:
            lost.append(f"file {lab_file.pk}")
            continue
        except CryptoError:
            tampered.append(f"file {lab_file.pk}")
            continue
        if snapshot["files"].get(str(lab_file.pk)) != digest:
            lost.append(f"file {lab_file.pk}")
    if files_seen < len(snapshot["files"]):
        lost.append(f"{len(snapshot['files']) - files_seen} file record(s)")
    signatures = 0
    for result in LabResult.objects.all():
        signatures += 1
        if result_status(result)[1] != "valid":
            tampered.append(f"lab result signature {result.pk}")
    for prescription in Prescription.objects.all():
        signatures += 1
        if prescription_status(prescription, prescription.unseal_all()) != "valid":
            tampered.append(f"prescription signature {prescription.pk}")
    outbox = OutboxKeyStore(Path(os.environ["CAREVAULT_DATA_DIR"]) / "outbox")
    messages = 0
    for name in outbox.names():
        messages += 1
        try:
            service.unwrap_current(outbox.get(name), outbox.context(name))
        except CryptoError:
            tampered.append(f"outbox {name}")
    if messages < len(snapshot["outbox"]):
        lost.append(f"{len(snapshot['outbox']) - messages} outbox message(s)")
    wrapped = 0
    master = service.master()
    for label, store in cli.key_stores():
        for name in store.names():
            wrapped += 1
            try:
                master.unwrap(store.get(name), store.context(name))
            except CryptoError:
                tampered.append(f"wrapped key {label}:{name}")
    uploads = storage.upload_dir()
    named = set(LabFile.objects.values_list("storage_name", flat=True))
    orphans = [p.name for p in uploads.iterdir() if p.name not in named]
    keyring = getattr(master, "keyring", None)
    return {
        "values": len(seen),
        "files": files_seen,
        "signatures": signatures,
        "outbox": messages,
        "wrapped_keys": wrapped,
        "master_versions": len(keyring.versions()) if keyring is not None else 0,
        "lost": lost,
        "tampered": tampered,
        "orphans": orphans,
    }


def _resume_and_check(cli: CommandLine, job: str, snapshot: dict[str, Any]) -> dict[str, Any]:
    from carevault.web.vault import sweep
    from carevault.web.vault.models import ReencryptionJob

    code = _quiet_main(cli, JOBS[job])
    sweep.sweep(older_than=0)
    facts = _check(cli, snapshot)
    facts["resume_exit"] = code
    facts["job_failures"] = sum(ReencryptionJob.objects.values_list("failures", flat=True))
    return facts


def _points_of(cli: CommandLine, job: str) -> list[str]:
    """The kill points an uninterrupted run of ``job`` passes, in order."""
    from carevault import faults

    def work() -> list[str]:
        if _quiet_main(cli, JOBS[job]) != 0:
            raise RuntimeError(f"an uninterrupted `{' '.join(JOBS[job])}` failed")
        return faults.reached()

    _, labels = _in_child(work, {"CAREVAULT_FAULT_KILL_AFTER": str(10**9)})
    return [str(label) for label in labels]


def _choose(labels: list[str], count: int, rng: random.Random) -> list[int]:
    """``count`` kill points (1-based): first one at a random occurrence of each kind of point
    (so rare kinds, such as a written file, are never missed), then uniformly at random."""
    by_kind: dict[str, list[int]] = {}
    for n, label in enumerate(labels, start=1):
        by_kind.setdefault(label, []).append(n)
    chosen = [rng.choice(places) for _, places in sorted(by_kind.items())][:count]
    chosen += [rng.randint(1, len(labels)) for _ in range(count - len(chosen))]
    return chosen


# -- the benchmark ----------------------------------------------------------------------------


def run(
    cli: CommandLine, points: int = 200, seed: int = 13, *, quick: bool = False
) -> dict[str, Any]:
    """Try ``points`` kill points (alternating jobs, at random units of work); the figures."""
    started = time.monotonic()
    rng = random.Random(seed)  # noqa: S311 -- reproducible kill points, not a secret
    scratch = Path(tempfile.mkdtemp(prefix="carevault-killsafety-"))
    work_dir, baseline = scratch / "data", scratch / "baseline"
    for name in _ENV_CLEARED:
        os.environ.pop(name, None)
    os.environ["CAREVAULT_DATA_DIR"] = str(work_dir)
    os.environ["CAREVAULT_REENCRYPT_IN_BACKGROUND"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "carevault.web.settings")
    import django

    django.setup()
    try:
        _, snapshot = _in_child(lambda: _prepare(cli, QUICK_PATIENTS if quick else EXTRA_PATIENTS))
        prepared = time.monotonic()
        shutil.copytree(work_dir, baseline)

        def fresh() -> None:
            shutil.rmtree(work_dir)
            shutil.copytree(baseline, work_dir)

        labels: dict[str, list[str]] = {}
        for job in JOBS:
            fresh()
            labels[job] = _points_of(cli, job)
        per_job = {
            job: points // len(JOBS) + (i < points % len(JOBS)) for i, job in enumerate(JOBS)
        }
        plan = {job: _choose(labels[job], per_job[job], rng) for job in JOBS}
        schedule = [(job, at) for job in JOBS for at in plan[job]]
        rng.shuffle(schedule)
        note = scratch / "killed-at"
        tried: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        killed = 0
        checked = Counter[str]()
        lost: list[str] = []
        tampered: list[str] = []
        resume_failures = extra_versions = orphans = 0
        points_started = time.monotonic()
        for job, at in schedule:
            fresh()
            note.unlink(missing_ok=True)
            sig, _ = _in_child(
                lambda job=job: _quiet_main(cli, JOBS[job]),  # type: ignore[misc]
                {"CAREVAULT_FAULT_KILL_AFTER": str(at), "CAREVAULT_FAULT_NOTE": str(note)},
            )
            tried[job] += 1
            if sig == signal.SIGKILL:
                killed += 1
                kinds[note.read_text() if note.exists() else "?"] += 1
            _, facts = _in_child(lambda job=job: _resume_and_check(cli, job, snapshot))  # type: ignore[misc]
            for name in ("values", "files", "signatures", "outbox", "wrapped_keys"):
                checked[name] += facts[name]
            lost += [f"{job}@{at}: {x}" for x in facts["lost"]]
            tampered += [f"{job}@{at}: {x}" for x in facts["tampered"]]
            orphans += len(facts["orphans"])
            if facts["resume_exit"] != 0 or facts["job_failures"]:
                resume_failures += 1
            # The baseline has one master version; a rotation finished after a kill, two.
            if job == "rotate" and facts["master_versions"] != 2:
                extra_versions += 1
        return {
            "points": points,
            "seed": seed,
            "points_per_job": dict(tried),
            "units_of_work_per_job": {job: len(found) for job, found in labels.items()},
            "killed": killed,
            "kill_kinds": dict(sorted(kinds.items())),
            "checked": dict(checked),
            "values_checked": sum(checked.values()),
            "lost": len(lost),
            "tampered": len(tampered),
            "lost_examples": lost[:10],
            "tampered_examples": tampered[:10],
            "resume_failures": resume_failures,
            "extra_master_versions": extra_versions,
            "orphans_after_sweep": orphans,
            "seconds": round(time.monotonic() - started, 1),
            "seconds_preparing": round(prepared - started, 1),
            "seconds_per_point": round((time.monotonic() - points_started) / max(points, 1), 2),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def render(result: dict[str, Any]) -> str:
    lines = [
        f"kill points tried: {result['points']} "
        + ", ".join(f"{job} {n}" for job, n in result["points_per_job"].items())
        + f" ({result['killed']} killed mid-job; units of work per job: "
        + ", ".join(f"{job} {n}" for job, n in result["units_of_work_per_job"].items())
        + ")",
        "killed at: " + ", ".join(f"{k} {n}" for k, n in result["kill_kinds"].items()),
        f"checked after resume: {result['values_checked']} ("
        + ", ".join(f"{n} {k}" for k, n in result["checked"].items())
        + ")",
        f"lost: {result['lost']}, tampered: {result['tampered']}, resumed jobs that failed: "
        f"{result['resume_failures']}, extra master versions: {result['extra_master_versions']}, "
        f"orphan files after the sweep: {result['orphans_after_sweep']}",
        f"time: {result['seconds']} s ({result['seconds_preparing']} s preparing, "
        f"{result['seconds_per_point']} s per kill point)",
    ]
    for example in result["lost_examples"] + result["tampered_examples"]:
        lines.append(f"  {example}")
    return "\n".join(lines)
