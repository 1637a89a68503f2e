"""``carevault bench web``: a doctor's patient-record page with N encrypted fields and signature
checks, against the same page over a plaintext copy of the same data, in one run.

The plaintext copy is the same view, template, queries and audit write; only its PHI columns
hold UTF-8 text instead of envelopes, and decryption and signature verification are replaced by
identity functions while it is rendered. The ratio is therefore what CareVault's cryptography
costs on the page (goal <= 1.2x at p50 and p95).

It also measures the page's bound (issue 16): the same page for a patient with 2,000 notes
against one with a single note, side by side. The record page shows a slice of each section
(``RECORD_PAGE_SIZE`` rows, newest first, "show more" for the rest) and decrypts only those,
so the ratio should stay near 1 (goal p50 <= 1.2x) however long the record grows.

Runs in its own data directory and SQLite database (set up by the command), never in the
user's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import statistics
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

GOAL = 1.2
VOLUME_GOAL = 1.2
VOLUME_NOTES = 2000


def _build(fields_target: int) -> dict[str, Any]:
    from django.core.management import call_command
    from django.test import Client

    from carevault.web.accounts.models import Role, User
    from carevault.web.clinic import actions
    from carevault.web.clinic.models import ClinicalNote, Diagnosis, Patient, Prescription
    from carevault.web.login import sessions

    call_command("migrate", interactive=False, verbosity=0)
    _train_policy()
    doctor = User.objects.create(username="bench-doctor", role=Role.DOCTOR)
    patients = {}
    for label in ("encrypted", "plaintext"):
        patient = actions.do_create_patient(
            doctor,
            name=f"Bench Patient {label}",
            birth_date=dt.date(1970, 1, 1),
            email=f"{label}@bench.invalid",
            phone="+1-555-0000",
            address="1 Benchmark Way",
        )
        actions.do_assign_doctor(doctor, doctor, patient)
        fields = 6
        i = 0
        while fields < fields_target:
            kind = i % 3
            if kind == 0:
                actions.do_add_diagnosis(
                    doctor, patient, code=f"Z{i:02d}.0", description=f"Finding number {i}"
                )
                fields += 2
            elif kind == 1:
                actions.do_add_note(doctor, patient, body=f"Progress note {i}. " * 20)
                fields += 1
            else:
                actions.do_prescribe(
                    doctor,
                    patient,
                    drug=f"Drug {i}",
                    dose="10 mg",
                    instructions="Once daily with water.",
                )
                fields += 3
            i += 1
        patients[label] = (patient, fields)

    # The plaintext copy: same rows, PHI columns rewritten to UTF-8 text.
    plain = patients["plaintext"][0]
    models: list[Any] = [Patient, Diagnosis, ClinicalNote, Prescription]
    for model in models:
        rows = [plain] if model is Patient else model.objects.filter(patient=plain)
        for row in rows:
            for column in model.PHI_FIELDS:
                if getattr(row, f"{column}_enc"):
                    setattr(row, f"{column}_enc", row.unseal(column).encode())
            row.save()
    client = Client()
    # Not force_login: the session guard refuses sessions that no login request started.
    sessions.start_client_session(client, doctor)
    return {"client": client, "patients": patients, "doctor": doctor}


def _train_policy() -> None:
    """A deployment runs with a trained encryption policy (``carevault demo`` trains one, as
    does ``carevault security train-policy``); without one every write gets the strongest
    suite. The benchmark trains one in its scratch data directory (a few seconds)."""
    from django.conf import settings

    from carevault.modelstore.datadir import model_store
    from carevault.security.policy_training import train as train_policy
    from carevault.web.vault import adaptive

    train_policy(model_store(settings.DATA_DIR), seed=0)
    adaptive.reset()


def _writes(patient: Any, doctor: Any, rounds: int) -> dict[str, Any]:
    """One note written through the platform's write path (policy decision, keyring, sealing,
    decision log, audit entry), under three policies, interleaved: the learned policy as
    deployed; always the strongest suite; a fixed AES-256-GCM with no decision and no log (what
    the platform did before the policy)."""
    from carevault.crypto import Suite
    from carevault.security.policy import strongest_policy
    from carevault.web.clinic import actions
    from carevault.web.vault import adaptive

    strongest = strongest_policy()
    modes: dict[str, Any] = {
        "learned policy (deployed)": contextlib.nullcontext,
        "always strongest": lambda: mock.patch.object(adaptive, "policy", return_value=strongest),
        "fixed AES-256-GCM, no decision": lambda: _fixed_suite(Suite.AES_256_GCM),
    }
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    body = "Progress note: stable, continue current plan. " * 8
    for i in range(rounds + 3):
        for mode, context in modes.items():
            with context():
                start = time.perf_counter()
                actions.do_add_note(doctor, patient, body=body)
                elapsed = time.perf_counter() - start
            if i >= 3:  # warm-up: keyring versions added, caches filled
                samples[mode].append(elapsed)
    base = statistics.median(samples["fixed AES-256-GCM, no decision"])
    strong = statistics.median(samples["always strongest"])
    out = {}
    for mode, values in samples.items():
        p50, p95 = _percentiles(values)
        out[mode] = {
            "p50": p50 * 1e3,
            "p95": p95 * 1e3,
            "vs_fixed": p50 / base,
            "vs_strongest": p50 / strong,
        }
    return out


@contextlib.contextmanager
def _fixed_suite(suite: Any) -> Iterator[None]:
    from carevault.security.policy import DataClass
    from carevault.web.vault import adaptive
    from carevault.web.vault.context import SYSTEM_WRITE

    decision = adaptive.policy().decide(adaptive.inputs_for(SYSTEM_WRITE, DataClass.ORDINARY, 1))
    fixed = dataclasses.replace(decision, suite=suite)
    with (
        mock.patch.object(adaptive, "decide", return_value=fixed),
        mock.patch.object(adaptive, "log_decision", return_value=None),
    ):
        yield


@contextlib.contextmanager
def _plaintext_mode() -> Iterator[None]:
    from carevault.web.clinic import actions as clinic_actions
    from carevault.web.labs import actions as lab_actions

    def identity(row: Any, column: str, sealed: bytes) -> str:
        return bytes(sealed).decode()

    def no_check(*args: Any, **kwargs: Any) -> str:
        return "valid"

    with (
        mock.patch("carevault.web.vault.service.PhiRow.open_text", identity),
        mock.patch.object(clinic_actions, "verify_signed", no_check),
        mock.patch.object(lab_actions, "verify_signed", no_check),
    ):
        yield


def _volume(doctor: Any, client: Any, notes: int, rounds: int) -> dict[str, Any]:
    """The record page of a patient with ``notes`` notes against one with a single note (same
    demographics, one diagnosis and one prescription each), requested in turn."""
    from django.urls import reverse

    from carevault.web.clinic import actions

    urls = {}
    for label, count in (("1 note", 1), (f"{notes} notes", notes)):
        patient = actions.do_create_patient(
            doctor, name=f"Volume {label}", birth_date=dt.date(1970, 1, 1)
        )
        actions.do_assign_doctor(doctor, doctor, patient)
        actions.do_add_diagnosis(doctor, patient, code="E11.9", description="Diabetes, stable")
        actions.do_prescribe(
            doctor, patient, drug="Metformin", dose="500 mg", instructions="Twice daily."
        )
        for i in range(count):
            actions.do_add_note(doctor, patient, body=f"Progress note {i}: stable. " * 10)
        urls[label] = reverse("clinic:patient_detail", args=[patient.pk])
    samples: dict[str, list[float]] = {label: [] for label in urls}
    for url in urls.values():  # warm-up
        client.get(url)
    for _ in range(rounds):
        for label, url in urls.items():
            start = time.perf_counter()
            response = client.get(url)
            samples[label].append(time.perf_counter() - start)
            if response.status_code != 200:
                raise RuntimeError(f"the {label} page answered {response.status_code}")
    few, many = (_percentiles(samples[label]) for label in urls)
    return {
        "notes": notes,
        "one_note_ms": {"p50": few[0] * 1e3, "p95": few[1] * 1e3},
        "many_notes_ms": {"p50": many[0] * 1e3, "p95": many[1] * 1e3},
        "ratio": {"p50": many[0] / few[0], "p95": many[1] / few[1]},
    }


def _percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94]


def run(quick: bool = False, fields: int = 60) -> dict[str, Any]:
    from django.urls import reverse

    built = _build(12 if quick else fields)
    client = built["client"]
    urls = {
        label: reverse("clinic:patient_detail", args=[patient.pk])
        for label, (patient, _) in built["patients"].items()
    }
    rounds = 10 if quick else 200
    samples: dict[str, list[float]] = {"encrypted": [], "plaintext": []}
    for label in samples:  # warm-up: templates, caches, keyring unwrap
        with _plaintext_mode() if label == "plaintext" else contextlib.nullcontext():
            assert client.get(urls[label]).status_code == 200
    for _ in range(rounds):
        for label in samples:
            with _plaintext_mode() if label == "plaintext" else contextlib.nullcontext():
                start = time.perf_counter()
                response = client.get(urls[label])
                samples[label].append(time.perf_counter() - start)
            if response.status_code != 200:
                raise RuntimeError(f"the {label} page answered {response.status_code}")
    enc50, enc95 = _percentiles(samples["encrypted"])
    pla50, pla95 = _percentiles(samples["plaintext"])
    writes = _writes(built["patients"]["encrypted"][0], built["doctor"], 10 if quick else 200)
    # A quick run (the test suite's smoke test) keeps the seeding short: 200 notes, 10 rounds.
    volume = _volume(built["doctor"], client, 200 if quick else VOLUME_NOTES, 10 if quick else 100)
    return {
        "benchmark": "web",
        "quick": quick,
        "fields": built["patients"]["encrypted"][1],
        "requests_each": rounds,
        "encrypted_ms": {"p50": enc50 * 1e3, "p95": enc95 * 1e3},
        "plaintext_ms": {"p50": pla50 * 1e3, "p95": pla95 * 1e3},
        "ratio": {"p50": enc50 / pla50, "p95": enc95 / pla95},
        "writes_ms": writes,
        "volume": volume,
        "goals": {
            "p50 ratio <= 1.2": enc50 / pla50 <= GOAL,
            "p95 ratio <= 1.2": enc95 / pla95 <= GOAL,
            f"{volume['notes']} notes vs 1, p50 ratio <= 1.2": volume["ratio"]["p50"]
            <= VOLUME_GOAL,
        },
    }


def render(result: dict[str, Any]) -> str:
    from carevault.platform.tables import format_table

    e, p, r = result["encrypted_ms"], result["plaintext_ms"], result["ratio"]
    rows = [
        ["encrypted page", f"{e['p50']:.2f} ms", f"{e['p95']:.2f} ms"],
        ["plaintext copy", f"{p['p50']:.2f} ms", f"{p['p95']:.2f} ms"],
        ["ratio (goal <= 1.2)", f"{r['p50']:.2f}x", f"{r['p95']:.2f}x"],
    ]
    goals = ", ".join(f"{k}: {'met' if ok else 'MISSED'}" for k, ok in result["goals"].items())
    note = " (quick run: smoke test only)" if result["quick"] else ""
    head = (
        f"carevault bench web{note}: doctor's patient page, {result['fields']} encrypted fields, "
        f"{result['requests_each']} requests each, interleaved"
    )
    write_rows = [
        [
            mode,
            f"{w['p50']:.2f} ms",
            f"{w['p95']:.2f} ms",
            f"{w['vs_fixed']:.2f}x",
            f"{w['vs_strongest']:.2f}x",
        ]
        for mode, w in result["writes_ms"].items()
    ]
    writes = format_table(
        ["one note written (policy)", "p50", "p95", "vs fixed", "vs strongest"], write_rows
    )
    v = result["volume"]
    volume_rows = [
        ["1 note", f"{v['one_note_ms']['p50']:.2f} ms", f"{v['one_note_ms']['p95']:.2f} ms"],
        [
            f"{v['notes']} notes",
            f"{v['many_notes_ms']['p50']:.2f} ms",
            f"{v['many_notes_ms']['p95']:.2f} ms",
        ],
        ["ratio (goal p50 <= 1.2)", f"{v['ratio']['p50']:.2f}x", f"{v['ratio']['p95']:.2f}x"],
    ]
    volume = format_table(["record page, bounded (issue 16)", "p50", "p95"], volume_rows)
    return f"{head}\n{format_table(['page', 'p50', 'p95'], rows)}\n{goals}\n\n{volume}\n\n{writes}"
