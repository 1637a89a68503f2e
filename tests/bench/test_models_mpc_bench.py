"""The multi-party scoring benchmark: not a timed test, so this checks only that a quick run
measures every item, reports the goals, and that its accuracy figures are the real ones."""

from __future__ import annotations

import json

import pytest

from carevault.bench import models_mpc


def test_a_quick_multiparty_benchmark_measures_every_item_and_renders_a_table() -> None:
    result = models_mpc.run(quick=True)
    json.dumps(result)  # a machine can read it (the CLI prints it with --json)
    assert result["start_seconds"] > 0
    single = result["single"]
    assert single["predictions"] == 20
    for part in ("label", "score", "plaintext_predict"):
        assert 0 < single[part]["p50_ms"] <= single[part]["p99_ms"] <= single[part]["max_ms"]
    assert single["label_vs_plaintext_p50"] > 1
    [batch] = result["batches"]
    assert batch["patients"] == 143
    assert batch["per_patient_ms"] * 143 == pytest.approx(batch["seconds"] * 1e3)
    accuracy = result["accuracy"]
    assert accuracy["test_cases"] == 143
    assert accuracy["agreement_batch"] == accuracy["agreement_single"] == 1.0
    assert 0 < accuracy["max_score_error"] < accuracy["min_abs_plaintext_logit"]
    sizes = result["sizes"]
    assert sizes["request_bytes_per_party_per_patient"] == 30 * sizes["share_bytes"]
    assert result["parameters"]["threshold"] == 1
    assert result["parameters"]["statistical_security_bits"] >= 40
    assert set(result["goals"]) == {
        "single prediction p50 <= 50 ms",
        "single prediction p99 <= 50 ms",
        "every test-set label agrees with plaintext",
    }
    assert result["goals"]["every test-set label agrees with plaintext"] is True
    table = models_mpc.render(result)
    assert "goal <= 50 ms" in table
    assert "143 test cases" in table
    assert "100% batch, 100% one by one" in table
