"""`carevault bench security` measures the scoring and training budgets; not a timed test, so
this checks only that a quick run measures every item and reports the goals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from carevault import cli
from carevault.bench import security as bench_security


def test_a_quick_security_benchmark_reports_every_measure_as_json(capsys):
    # The ensemble's budgets run here; the record page (a database of its own) in the test below.
    assert cli.main(["bench", "security", "--part", "ensemble", "--quick", "--json"]) == 0
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


def test_the_record_page_part_compares_every_scoring_mode_and_leaves_nothing_unscored(tmp_path):
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    exe = Path(sys.executable).parent / "carevault"
    done = subprocess.run(
        [exe, "bench", "security", "--part", "record-page", "--quick", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)["record_page"]
    for load in ("paced", "back_to_back"):
        measured = report["loads"][load]["ms"]
        assert set(measured) == {
            "security off",
            "inline",
            "background",
            "background, scored elsewhere",
        }
        assert all(0 < mode["p50"] <= mode["p99"] for mode in measured.values())
    assert report["goals"]["nothing left unscored"] is True
    assert {name.split(" <=")[0] for name in report["goals"]} == {
        "worker scoring p50",
        "worker scoring p99",
        "nothing left unscored",
    }
    assert list(tmp_path.iterdir()) == []  # the bench's scratch directory, never the user's
