"""``carevault bench models`` (multi-party part): MPyC scoring among three local party processes
against its budget (issue 7, "Multi-party inference").

* start-up: the three processes started, handed their model shares and connected to one another
  (paid once per session, not per prediction);
* one prediction end to end (the client shares the features, the three parties score and compare
  with zero, the client recombines the label), p50 / p99, beside the plaintext pipeline's
  ``predict`` on one patient; goal <= 50 ms per prediction; the same with the score revealed;
* batches (the whole test split, and a larger batch in the full run), amortised per patient;
* accuracy: label agreement with plaintext on the whole test split, one by one and in a batch
  (in the quick run too: it takes a few seconds),
  and the largest |score error| against the exact logit;
* bytes each party receives per patient and replies with.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from carevault.modelguard import multiparty as mp
from carevault.modelguard.dataset import load_split
from carevault.modelguard.models import LOGISTIC, fit, linear_form
from carevault.modelguard.multiparty_launcher import LocalParties
from carevault.platform.tables import format_table

from .timing import percentiles_ms

GOALS = {"single_ms_max": 50.0}


def _single(parties: LocalParties, pipeline: Any, cases: Any, n: int) -> dict[str, Any]:
    clock = time.perf_counter
    parties.predict(cases[0])  # warm-up: first allocations, MPyC's cached tables
    label, score, plain = [], [], []
    for i in range(n):
        x = cases[i % len(cases)]
        start = clock()
        parties.predict(x)
        label.append(clock() - start)
        start = clock()
        parties.predict(x, reveal="score")
        score.append(clock() - start)
        start = clock()
        pipeline.predict(x[None, :])
        plain.append(clock() - start)
    result: dict[str, Any] = {
        "predictions": n,
        "label": percentiles_ms(label),
        "score": percentiles_ms(score),
        "plaintext_predict": percentiles_ms(plain),
    }
    result["label_vs_plaintext_p50"] = (
        result["label"]["p50_ms"] / result["plaintext_predict"]["p50_ms"]
    )
    return result


def _batch(parties: LocalParties, cases: Any, patients: int, rounds: int) -> dict[str, Any]:
    batch = cases[np.arange(patients) % len(cases)]
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        parties.predict(batch)
        best = min(best, time.perf_counter() - start)
    return {"patients": patients, "seconds": best, "per_patient_ms": best / patients * 1e3}


def _accuracy(parties: LocalParties, pipeline: Any, model: Any, cases: Any) -> dict[str, Any]:
    labels = pipeline.predict(cases)
    batch = parties.predict(cases)
    scores = parties.predict(cases, reveal="score")
    exact = model.decision(cases)
    one_by_one = np.array([parties.predict(x)[0] for x in cases])
    return {
        "test_cases": len(cases),
        "agreement_batch": float(np.mean(batch == labels)),
        "agreement_single": float(np.mean(one_by_one == labels)),
        "max_score_error": float(np.abs(scores - exact).max()),
        "min_abs_plaintext_logit": float(np.abs(exact).min()),
    }


def _sizes(n_features: int) -> dict[str, int]:
    client = mp.MultipartyClient(n_features)
    one = client.share_request(np.zeros(n_features))
    two = client.share_request(np.zeros((2, n_features)))
    reply_per_patient = mp.share_width()
    return {
        "request_bytes_per_party_single": len(one[0]),
        "request_bytes_per_party_per_patient": len(two[0]) - len(one[0]),
        "reply_bytes_per_party_single": mp.REPLY_HEADER.size + reply_per_patient,
        "share_bytes": mp.share_width(),
    }


def run(quick: bool = False) -> dict[str, Any]:
    split = load_split()
    pipeline = fit(LOGISTIC, split.X_train, split.y_train)
    model = linear_form(pipeline)
    cases = split.X_test
    with LocalParties(mp.deal_model(model)) as parties:
        single = _single(parties, pipeline, cases, 20 if quick else 300)
        batches = [_batch(parties, cases, len(cases), 1 if quick else 3)]
        if not quick:
            batches.append(_batch(parties, cases, 1024, 3))
        accuracy = _accuracy(parties, pipeline, model, cases)
        start_seconds = parties.start_seconds
    agreement_ok = accuracy["agreement_batch"] == accuracy["agreement_single"] == 1.0
    return {
        "benchmark": "models-multiparty",
        "quick": quick,
        "parameters": {
            "parties": list(mp.PARTIES),
            "threshold": mp.THRESHOLD,
            "fixed_point_bits": mp.BIT_LENGTH,
            "fraction_bits": mp.FRAC_BITS,
            "statistical_security_bits": mp.SEC_PARAM,
            "field_bits": int(mp.field().modulus).bit_length(),
            "transport": "TCP on 127.0.0.1, no TLS",
        },
        "start_seconds": start_seconds,
        "single": single,
        "batches": batches,
        "accuracy": accuracy,
        "sizes": _sizes(split.n_features),
        "goals": {
            "single prediction p50 <= 50 ms": single["label"]["p50_ms"] <= GOALS["single_ms_max"],
            "single prediction p99 <= 50 ms": single["label"]["p99_ms"] <= GOALS["single_ms_max"],
            "every test-set label agrees with plaintext": agreement_ok,
        },
    }


def render(result: dict[str, Any]) -> str:
    s, a, z, p = result["single"], result["accuracy"], result["sizes"], result["parameters"]

    def ms(part: dict[str, float]) -> str:
        return f"{part['p50_ms']:.1f} / {part['p99_ms']:.1f} ms"

    rows = [
        ["start: 3 processes, shares, connect", f"{result['start_seconds']:.2f} s", "once"],
        ["single: share + 3-party score + label", ms(s["label"]), "goal <= 50 ms"],
        ["single: score revealed instead", ms(s["score"]), ""],
        ["  plaintext predict, 1 patient", ms(s["plaintext_predict"]), "baseline"],
        ["  multi-party / plaintext (p50)", f"{s['label_vs_plaintext_p50']:.0f}x", ""],
    ]
    for b in result["batches"]:
        rows.append(
            [
                f"batch: {b['patients']:,} patients, label",
                f"{b['per_patient_ms']:.2f} ms/patient",
                f"{b['seconds'] * 1e3:.0f} ms in all",
            ]
        )
    rows += [
        [
            f"agreement on {a['test_cases']} test cases",
            f"{a['agreement_batch']:.0%} batch, {a['agreement_single']:.0%} one by one",
            "goal 100%",
        ],
        [
            "max |score error|",
            f"{a['max_score_error']:.1e}",
            f"min |logit| {a['min_abs_plaintext_logit']:.3f}",
        ],
        [
            "bytes to each party: 1 patient / +1",
            f"{z['request_bytes_per_party_single']} / "
            f"+{z['request_bytes_per_party_per_patient']} B",
            f"reply {z['reply_bytes_per_party_single']} B",
        ],
    ]
    goals = ", ".join(
        f"{name}: {'met' if ok else 'MISSED'}" for name, ok in result["goals"].items()
    )
    note = " (quick run: small sizes, for smoke tests only)" if result["quick"] else ""
    params = (
        f"MPyC, {len(p['parties'])} parties, t={p['threshold']}, SecFxp "
        f"{p['fixed_point_bits']}:{p['fraction_bits']}, {p['field_bits']}-bit field, "
        f"k={p['statistical_security_bits']}, {p['transport']}"
    )
    header = ["measure", "p50 / p99 or value", "note"]
    return (
        f"carevault bench models (multi-party){note}, {params}\n"
        f"{format_table(header, rows)}\n{goals}"
    )
