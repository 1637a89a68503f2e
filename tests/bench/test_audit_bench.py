"""``carevault bench audit``: the chained and the sealed append, measured the same way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from carevault.bench import audit


def test_it_renders_both_logs_side_by_side() -> None:
    row = {
        "backend": "sqlite",
        "writers": 2,
        "entries_per_writer": 10,
        "chained_per_s": 50.0,
        "sealed_per_s": 100.0,
        "ratio": 2.0,
    }
    text = audit.render({"quick": True, "rows": [row]})
    assert "chained (head row)" in text
    assert "sealed (no lock)" in text
    assert text.splitlines()[-1].split() == ["sqlite", "10", "50.0", "100.0", "2.0x"]


def test_a_measurement_runs_real_writers_on_a_scratch_database() -> None:
    # Two writer processes of a few entries each: a smoke test, not a measurement.
    rate = audit._measure("sealed", 3, None)
    assert rate > 0
    assert audit._measure("chained", 3, None) > 0


def test_the_command_lists_the_audit_benchmark() -> None:
    exe = Path(sys.executable).parent / "carevault"
    done = subprocess.run([exe, "bench", "--help"], capture_output=True, text=True, check=False)
    assert "audit" in done.stdout
