"""`carevault bench security` measures the scoring and training budgets; not a timed test, so
this checks only that a quick run measures every item and reports the goals."""

from __future__ import annotations

import json

from carevault import cli
from carevault.bench import security as bench_security


def test_a_quick_security_benchmark_reports_every_measure_as_json(capsys):
    assert cli.main(["bench", "security", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    single = result["single"]
    for part in ("assess", "features", "ensemble_fast_path", "ensemble_sklearn_per_call"):
        assert 0 < single[part]["p50_ms"] <= single[part]["p99_ms"] <= single[part]["max_ms"]
    assert single["sklearn_vs_fast_p50"] > 1
    batch = result["batch"]
    assert batch["ensemble_events_per_s"] > 0
    assert batch["end_to_end_events_per_s"] > 0
    assert batch["end_to_end_events_per_s"] < batch["ensemble_events_per_s"]
    training = result["training"]
    assert training["events"] > 0
    assert training["total_s"] > 0
    assert set(training["seconds"]) == {"generate", "features", "fit"}
    assert set(result["goals"]) == {
        "assess p99 <= 1 ms",
        "batch >= 50,000 events/s (ensemble)",
        "batch >= 50,000 events/s (with features)",
        "training on 1 M events < 5 min",
    }
    assert result["goals"]["training on 1 M events < 5 min"] is None  # quick: not measured
    # The table for people, from the same result.
    table = bench_security.render(result)
    assert "goal p99 <= 1000 us" in table
    assert ">= 50k" in table
    assert "goal < 300 s for 1 M" in table
