"""The homomorphic-scoring benchmark: not a timed test, so this checks only that a quick run
measures every item, reports the goals, and that its accuracy figures are the real ones."""

from __future__ import annotations

import json

from carevault.bench import models_he


def test_a_quick_homomorphic_benchmark_measures_every_item_and_renders_a_table() -> None:
    result = models_he.run(quick=True)
    json.dumps(result)  # a machine can read it (the CLI prints it with --json)
    single = result["single"]
    for part in ("end_to_end", "server", "plaintext_predict_proba"):
        assert 0 < single[part]["p50_ms"] <= single[part]["p99_ms"] <= single[part]["max_ms"]
    # The server's part is inside the end-to-end time of the same predictions.
    assert single["server"]["p50_ms"] < single["end_to_end"]["p50_ms"]
    assert single["end_to_end_vs_plaintext_p50"] > 1
    assert single["request_bytes"] > single["reply_bytes"] > 0
    batch = result["batch"]
    assert batch["patients"] == 512
    assert 0 < batch["server_per_patient_ms"] < batch["per_patient_ms"]
    assert batch["request_bytes"] == batch["request_bytes_per_patient"] * batch["patients"]
    accuracy = result["accuracy"]
    assert accuracy["test_cases"] == 143
    assert accuracy["agreement_single"] == accuracy["agreement_batch"] == 1.0
    assert 0 < accuracy["max_logit_error_batch"] < accuracy["min_abs_plaintext_logit"]
    assert result["parameters"]["total_modulus_bits"] <= 218
    assert set(result["goals"]) == {
        "single encrypted prediction p50 <= 30 ms",
        "single encrypted prediction p99 <= 30 ms",
        "batch <= 1 ms per patient",
        "every test-set label agrees with plaintext",
    }
    assert result["goals"]["every test-set label agrees with plaintext"] is True
    table = models_he.render(result)
    assert "goal <= 30 ms" in table
    assert "goal <= 1000 us" in table
    assert "143 test cases" in table
