"""``carevault bench`` (all): every benchmark's goals gathered into one Markdown table, and
the exit code that follows. The benchmarks themselves are stood in for by their JSON."""

from __future__ import annotations

from typing import Any

import pytest

from carevault import cli
from carevault.bench import summary

RESULTS: dict[str, Any] = {
    "crypto": {
        "field": {"field_vs_aesgcm": 1.31, "fernet_vs_field": 6.2},
        "goals": {"field_vs_aesgcm <= 1.5": True, "fernet_vs_field >= 5": True},
    },
    "models": {
        "parts": {
            "homomorphic": {
                "single": {"p50_ms": 12.0},
                "goals": {"single p50 <= 30 ms": True, "batch <= 1 ms": None},
            }
        }
    },
    "audit": {"rows": [{"backend": "sqlite", "ratio": 3.4}]},
    "killsafety": {"lost": 0, "tampered": 0, "resume_failures": 0},
    "load": {
        "goals": {"2 processes >= 1.7x of 1 (record page)": False, "0 errors": True},
        "goal_values": {"2 processes >= 1.7x of 1 (record page)": 0.68, "0 errors": 0},
        "notes": ["2 processes >= 1.7x of 1 is out of reach on this 2-core machine"],
    },
    "web": {"error": "exit 1: it broke"},
}


def _outcome() -> dict[str, Any]:
    return summary.run_all(
        quick=True, names=tuple(RESULTS), runner=lambda name, quick: RESULTS[name]
    )


def test_every_goal_of_every_benchmark_becomes_a_row_with_its_measured_value():
    rows = {(r["benchmark"], r["goal"]): r for r in _outcome()["rows"]}
    assert rows[("crypto", "field_vs_aesgcm <= 1.5")]["measured"] == 1.31
    assert rows[("crypto", "field_vs_aesgcm <= 1.5")]["met"] is True
    nested = rows[("models / parts / homomorphic", "single p50 <= 30 ms")]
    assert nested["met"] is True
    assert rows[("models / parts / homomorphic", "batch <= 1 ms")]["met"] is None
    assert rows[("load", "2 processes >= 1.7x of 1 (record page)")]["measured"] == 0.68
    assert rows[("killsafety", "0 lost, 0 tampered, 0 failed resumes")]["met"] is True
    assert (
        rows[("audit / sqlite", "sealed / chained appends per second (no goal stated)")]["met"]
        is None
    )
    assert rows[("web", "ran")]["met"] is False


def test_the_markdown_table_has_one_line_per_goal_and_says_met_or_missed():
    outcome = _outcome()
    table = summary.markdown(outcome)
    lines = table.splitlines()
    assert "| benchmark | goal | measured | verdict |" in lines
    body = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert len(body) == len(outcome["rows"])
    assert "| crypto | field_vs_aesgcm <= 1.5 | 1.31 | MET |" in lines
    assert "| load | 2 processes >= 1.7x of 1 (record page) | 0.68 | **MISSED** |" in lines
    assert "| web | ran | exit 1: it broke | **MISSED** |" in lines
    assert "out of reach on this 2-core machine" in table
    assert "`carevault bench --quick`" in table
    assert summary.missed(outcome) == [
        "load: 2 processes >= 1.7x of 1 (record page)",
        "web: ran",
    ]


def test_a_pipe_in_a_cell_does_not_break_the_table():
    assert summary._cell("a | b") == "a \\| b"


def test_the_table_is_written_to_the_data_directory_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("CAREVAULT_DATA_DIR", str(tmp_path))
    written = summary.write("| x |\n", None)
    assert written == tmp_path / "bench.md"
    assert written.read_text() == "| x |\n"


def _fake_all(monkeypatch: pytest.MonkeyPatch, results: dict[str, Any]) -> None:
    real = summary.run_all

    def run_all(**kwargs: Any) -> dict[str, Any]:
        return real(
            quick=kwargs["quick"], names=tuple(results), runner=lambda name, quick: results[name]
        )

    monkeypatch.setattr(summary, "run_all", run_all)


def test_bench_with_no_name_runs_all_and_exits_non_zero_on_a_missed_goal(
    monkeypatch, capsys, tmp_path
):
    _fake_all(monkeypatch, RESULTS)
    assert cli.main(["bench", "--quick", "--output", str(tmp_path / "b.md")]) == 1
    out = capsys.readouterr().out
    assert "**MISSED**" in out
    assert (tmp_path / "b.md").read_text().startswith("Produced by `carevault bench --quick`")


def test_bench_all_report_only_exits_zero(monkeypatch, capsys, tmp_path):
    _fake_all(monkeypatch, RESULTS)
    code = cli.main(["bench", "all", "--report-only", "--output", str(tmp_path / "b.md")])
    assert code == 0


def test_bench_all_exits_zero_when_every_goal_is_met(monkeypatch, capsys, tmp_path):
    _fake_all(monkeypatch, {"crypto": RESULTS["crypto"], "killsafety": RESULTS["killsafety"]})
    assert cli.main(["bench", "all", "--output", str(tmp_path / "b.md")]) == 0
