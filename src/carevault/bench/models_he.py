"""``carevault bench models`` (homomorphic part): CKKS scoring against its budgets (issue 7,
"Homomorphic inference").

* one encrypted prediction end to end (client encrypts, server scores, client decrypts and
  applies the sigmoid) and the server's part alone, p50 / p99, beside the plaintext pipeline's
  ``predict_proba`` on one patient; goal <= 30 ms per prediction;
* batched scoring in the columns layout (one ciphertext per feature, 4096 patients per request),
  amortised per patient, end to end and server only; goal <= 1 ms per patient;
* request / reply sizes, and accuracy: label agreement with plaintext on the whole test split
  and the largest |logit error|.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from carevault.modelguard import homomorphic as he
from carevault.modelguard.dataset import load_split
from carevault.modelguard.homomorphic_client import HomomorphicClient
from carevault.modelguard.models import LOGISTIC, fit, linear_form
from carevault.platform.tables import format_table

from .timing import percentiles_ms

GOALS = {"single_ms_max": 30.0, "batch_per_patient_ms_max": 1.0}


def _single(
    client: HomomorphicClient, pipeline: Any, model: Any, cases: Any, n: int
) -> dict[str, Any]:
    clock = time.perf_counter
    he.score_request(client.encrypt_rows(cases[0]), model)  # warm-up: first allocations
    end_to_end, server, plain = [], [], []
    for i in range(n):
        x = cases[i % len(cases)]
        start = clock()
        request = client.encrypt_rows(x)
        mid = clock()
        reply = he.score_request(request, model)
        after = clock()
        client.decrypt_proba(reply, 1)
        end_to_end.append(clock() - start)
        server.append(after - mid)
        start = clock()
        pipeline.predict_proba(x[None, :])
        plain.append(clock() - start)
    result: dict[str, Any] = {
        "predictions": n,
        "end_to_end": percentiles_ms(end_to_end),
        "server": percentiles_ms(server),
        "plaintext_predict_proba": percentiles_ms(plain),
        "request_bytes": len(request),
        "reply_bytes": len(reply),
    }
    result["end_to_end_vs_plaintext_p50"] = (
        result["end_to_end"]["p50_ms"] / result["plaintext_predict_proba"]["p50_ms"]
    )
    return result


def _batch(
    client: HomomorphicClient, pipeline: Any, model: Any, cases: Any, quick: bool
) -> dict[str, Any]:
    patients = 512 if quick else he.SLOTS
    batch = cases[np.arange(patients) % len(cases)]
    best = {"encrypt": float("inf"), "server": float("inf"), "decrypt": float("inf")}
    best_plain = float("inf")
    for _ in range(1 if quick else 3):
        start = time.perf_counter()
        request = client.encrypt_columns(batch)
        encrypted = time.perf_counter()
        reply = he.score_request(request, model)
        scored = time.perf_counter()
        client.decrypt_proba(reply, patients)
        done = time.perf_counter()
        best["encrypt"] = min(best["encrypt"], encrypted - start)
        best["server"] = min(best["server"], scored - encrypted)
        best["decrypt"] = min(best["decrypt"], done - scored)
        start = time.perf_counter()
        pipeline.predict_proba(batch)
        best_plain = min(best_plain, time.perf_counter() - start)
    total = sum(best.values())
    return {
        "patients": patients,
        "seconds": best,
        "per_patient_ms": total / patients * 1e3,
        "server_per_patient_ms": best["server"] / patients * 1e3,
        "plaintext_per_patient_ms": best_plain / patients * 1e3,
        "request_bytes": len(request),
        "request_bytes_per_patient": len(request) / patients,
        "reply_bytes": len(reply),
    }


def _accuracy(client: HomomorphicClient, pipeline: Any, model: Any, cases: Any) -> dict[str, Any]:
    """Both layouts on the whole test split: label agreement and the worst logit error of the
    arithmetic (without the server's blinding noise), then label agreement with the noise the
    server always adds (homomorphic.py, "Noise")."""
    exact = model.decision(cases)
    labels = pipeline.predict(cases)
    columns = client.decrypt_logits(
        he.score_request(client.encrypt_columns(cases), model, noise=False)
    )
    rows = np.array(
        [
            client.decrypt_logits(he.score_request(client.encrypt_rows(x), model, noise=False))[0]
            for x in cases
        ]
    )
    noisy = client.decrypt_logits(he.score_request(client.encrypt_columns(cases), model))
    return {
        "test_cases": len(cases),
        "agreement_single": float(np.mean((rows > 0).astype(int) == labels)),
        "agreement_batch": float(np.mean((columns > 0).astype(int) == labels)),
        "max_logit_error_single": float(np.abs(rows - exact).max()),
        "max_logit_error_batch": float(np.abs(columns - exact).max()),
        "min_abs_plaintext_logit": float(np.abs(exact).min()),
        "agreement_batch_with_noise": float(np.mean((noisy > 0).astype(int) == labels)),
        "noise_factor_range": [1 / he.NOISE_FACTOR, he.NOISE_FACTOR],
        "max_noise_ratio": float(np.max(np.maximum(noisy / exact, exact / noisy))),
    }


def run(quick: bool = False) -> dict[str, Any]:
    split = load_split()
    pipeline = fit(LOGISTIC, split.X_train, split.y_train)
    model = linear_form(pipeline)
    client = HomomorphicClient(split.n_features)
    # Per-core figures: SEAL runs these operations on one thread; hold BLAS to one as well.
    with threadpool_limits(limits=1):
        single = _single(client, pipeline, model, split.X_test, 30 if quick else 300)
        batch = _batch(client, pipeline, model, split.X_test, quick)
        accuracy = _accuracy(client, pipeline, model, split.X_test)
    return {
        "benchmark": "models-homomorphic",
        "quick": quick,
        "parameters": {
            "scheme": "CKKS",
            "poly_modulus_degree": he.POLY_MODULUS_DEGREE,
            "coeff_mod_bit_sizes": list(he.COEFF_MOD_BIT_SIZES),
            "total_modulus_bits": he.ACCEPTED.total_modulus_bits,
            "max_bits_for_128_bit_security": he.MAX_MODULUS_BITS_128[he.POLY_MODULUS_DEGREE],
            "scale_bits": he.SCALE_BITS,
            "public_context_bytes": len(client.public_context),
        },
        "single": single,
        "batch": batch,
        "accuracy": accuracy,
        "goals": {
            "single encrypted prediction p50 <= 30 ms": (
                single["end_to_end"]["p50_ms"] <= GOALS["single_ms_max"]
            ),
            "single encrypted prediction p99 <= 30 ms": (
                single["end_to_end"]["p99_ms"] <= GOALS["single_ms_max"]
            ),
            "batch <= 1 ms per patient": (
                batch["per_patient_ms"] <= GOALS["batch_per_patient_ms_max"]
            ),
            "every test-set label agrees with plaintext": (
                accuracy["agreement_single"] == 1.0 and accuracy["agreement_batch"] == 1.0
            ),
        },
    }


def render(result: dict[str, Any]) -> str:
    s, b, a, p = result["single"], result["batch"], result["accuracy"], result["parameters"]

    def ms(part: dict[str, float]) -> str:
        return f"{part['p50_ms']:.2f} / {part['p99_ms']:.2f} ms"

    rows = [
        ["single: encrypt + server + decrypt", ms(s["end_to_end"]), "goal <= 30 ms"],
        ["  server only (validate + score)", ms(s["server"]), ""],
        ["  plaintext predict_proba, 1 patient", ms(s["plaintext_predict_proba"]), "baseline"],
        ["  encrypted / plaintext (p50)", f"{s['end_to_end_vs_plaintext_p50']:.0f}x", ""],
        [
            f"batch: {b['patients']:,} patients, end to end",
            f"{b['per_patient_ms'] * 1e3:.1f} us/patient",
            "goal <= 1000 us",
        ],
        ["  server only", f"{b['server_per_patient_ms'] * 1e3:.2f} us/patient", ""],
        ["  plaintext predict_proba", f"{b['plaintext_per_patient_ms'] * 1e3:.3f} us/patient", ""],
        [
            "  encrypt / server / decrypt",
            " / ".join(f"{b['seconds'][k] * 1e3:.0f}" for k in ("encrypt", "server", "decrypt"))
            + " ms",
            "",
        ],
        [
            "sizes: single request / reply",
            f"{s['request_bytes'] / 1024:.0f} / {s['reply_bytes'] / 1024:.0f} KiB",
            f"context {p['public_context_bytes']} B",
        ],
        [
            "sizes: batch request / reply",
            f"{b['request_bytes'] / 2**20:.1f} MiB / {b['reply_bytes'] / 1024:.0f} KiB",
            f"{b['request_bytes_per_patient'] / 1024:.1f} KiB/patient",
        ],
        [
            f"agreement on {a['test_cases']} test cases",
            f"{a['agreement_single']:.0%} single, {a['agreement_batch']:.0%} batch",
            "goal 100%",
        ],
        [
            "max |logit error| single / batch",
            f"{a['max_logit_error_single']:.1e} / {a['max_logit_error_batch']:.1e}",
            f"min |logit| {a['min_abs_plaintext_logit']:.3f}",
        ],
    ]
    goals = ", ".join(
        f"{name}: {'met' if ok else 'MISSED'}" for name, ok in result["goals"].items()
    )
    note = " (quick run: small sizes, for smoke tests only)" if result["quick"] else ""
    params = (
        f"CKKS N={p['poly_modulus_degree']}, modulus {p['coeff_mod_bit_sizes']} = "
        f"{p['total_modulus_bits']} bits (<= {p['max_bits_for_128_bit_security']} for 128-bit), "
        f"scale 2^{p['scale_bits']}"
    )
    header = ["measure", "p50 / p99 or value", "note"]
    return (
        f"carevault bench models (homomorphic){note}, {params}\n"
        f"{format_table(header, rows)}\n{goals}"
    )
