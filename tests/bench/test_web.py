"""`carevault bench web` measures the patient page encrypted and over a plaintext copy; a quick
run in a subprocess (its own data directory) checks that it measures both and reports ratios."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_a_quick_web_benchmark_reports_both_pages_and_their_ratio(tmp_path):
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    exe = Path(sys.executable).parent / "carevault"
    result = subprocess.run(
        [exe, "bench", "web", "--quick", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["fields"] >= 12
    for page in ("encrypted_ms", "plaintext_ms"):
        assert report[page]["p50"] > 0
        assert report[page]["p95"] >= report[page]["p50"]
    ratio = report["encrypted_ms"]["p50"] / report["plaintext_ms"]["p50"]
    assert abs(report["ratio"]["p50"] - ratio) < 1e-9
    # The write path under the deployed policy, always-strongest and a fixed suite.
    writes = report["writes_ms"]
    assert set(writes) == {
        "learned policy (deployed)",
        "always strongest",
        "fixed AES-256-GCM, no decision",
    }
    assert writes["fixed AES-256-GCM, no decision"]["vs_fixed"] == 1.0
    assert all(w["p95"] >= w["p50"] > 0 for w in writes.values())
    # The benchmark never writes into the data directory it was given.
    assert not (tmp_path / "carevault.sqlite3").exists()
