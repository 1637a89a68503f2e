"""``carevault bench load``: Locust's results read from a real run, the goals judged, the exit
code that follows, the report for people. No timing is asserted: only what was counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from carevault import cli
from carevault.bench import load


def _page(rps: float, failures: int = 0) -> dict[str, float]:
    return {"requests": 100, "failures": failures, "rps": rps, "p50": 10, "p95": 20, "p99": 30}


def _run(pages: dict[str, dict[str, float]], failures: int = 0) -> dict[str, Any]:
    return {
        "pages": pages,
        "failures": [],
        "seconds": 10.0,
        "locust_cpu_cores": 0.4,
        "machine_busy": 0.9,
    }


def _row(
    backend: str,
    workers: int,
    security: bool,
    *,
    login: float,
    record: float,
    mix_failures: int = 0,
    flagged: int = 0,
) -> dict[str, Any]:
    return {
        "name": load.Config(backend, workers, security).name,
        "backend": backend,
        "workers": workers,
        "security": security,
        "mix": _run({"record page": _page(1.0, mix_failures), "Aggregated": _page(5.0)}),
        "security_activity": (
            {"events": 40, "flagged": flagged, "incidents": 0, "responses": 0, "rules": []}
            if security
            else None
        ),
        "probes": {
            "login page": _run({"login page": _page(login)}),
            "record page": _run({"record page": _page(record), "login packet": _page(0.1)}),
        },
    }


def _result(rows: list[dict[str, Any]], cores: int = 8) -> dict[str, Any]:
    result = {
        "benchmark": "load",
        "quick": True,
        "seconds": 1.0,
        "durations": {"mix_s": 15, "probe_s": 6, "pace_s": [1.0, 2.0]},
        "mix_users": 7,
        "probe_users": 4,
        "cores": cores,
        "configs": rows,
        "skipped": [],
    }
    result.update(load.evaluate(rows, cores=cores))
    return result


GOOD = [
    _row("sqlite", 1, True, login=200, record=60),
    _row("sqlite", 1, False, login=200, record=62),
    _row("sqlite", 2, True, login=380, record=110),
]


def test_every_goal_is_met_when_the_figures_meet_them():
    result = _result(GOOD)
    assert result["goals"] == {
        "record page >= 25% of login page throughput": True,
        "security on >= 0.9x of off (record page)": True,
        "2 processes >= 1.7x of 1 (record page)": True,
        "0 errors": True,
        "0 security events from the legitimate mix": True,
    }
    assert load.missed(result) == []
    assert result["goal_values"]["record page >= 25% of login page throughput"] == 0.289


def test_the_worst_configuration_decides_a_goal():
    rows = [*GOOD, _row("postgresql", 1, True, login=200, record=30)]
    result = _result(rows)
    assert result["goals"]["record page >= 25% of login page throughput"] is False
    assert result["goal_values"]["record page >= 25% of login page throughput"] == 0.15


def test_an_error_anywhere_or_a_flagged_event_in_the_mix_misses_its_goal():
    rows = [
        _row("sqlite", 1, True, login=200, record=60, mix_failures=2, flagged=1),
        _row("sqlite", 1, False, login=200, record=62),
    ]
    result = _result(rows)
    assert result["goals"]["0 errors"] is False
    assert result["goal_values"]["0 errors"] == 2
    assert result["goals"]["0 security events from the legitimate mix"] is False
    # Not measured without a 2-process run: neither met nor missed.
    assert result["goals"]["2 processes >= 1.7x of 1 (record page)"] is None
    assert "2 processes >= 1.7x of 1 (record page)" not in load.missed(result)


def test_a_missed_scale_out_goal_on_two_cores_says_why():
    rows = [*GOOD[:2], _row("sqlite", 2, True, login=300, record=80)]
    result = _result(rows, cores=2)
    assert result["goals"]["2 processes >= 1.7x of 1 (record page)"] is False
    assert any("2-core machine" in note and "Locust" in note for note in result["notes"])
    assert "2 processes >= 1.7x of 1 (record page): MISSED" not in load.render(result)
    assert "MISSED" in load.render(result)


def test_the_quick_matrix_gives_each_ratio_once_and_the_full_one_every_combination():
    quick = load.matrix(quick=True, backends=["sqlite", "postgresql"])
    assert [(c.backend, c.workers, c.security) for c in quick] == [
        ("sqlite", 1, True),
        ("sqlite", 1, False),
        ("sqlite", 2, True),
    ]
    full = load.matrix(quick=False, backends=["sqlite", "postgresql"])
    assert len(full) == 8
    assert len({(c.backend, c.workers, c.security) for c in full}) == 8


def test_the_report_shows_every_page_the_probes_and_the_verdicts():
    text = load.render(_result(GOOD))
    assert "== sqlite, 2 proc, security on" in text
    assert "PROBE record page" in text
    assert "security layer on the mix: 40 events scored, 0 at step-up or above" in text
    assert "0 security events from the legitimate mix" in text
    assert text.count("MET") >= 5


def test_a_password_never_shows_in_an_unreachable_servers_line():
    assert load._safe("postgres://bench:s3cret@127.0.0.1:1/x") == "postgres://bench@127.0.0.1:1/x"
    why = load.reachable("postgres://bench:s3cret@127.0.0.1:1/x", "redis://127.0.0.1:1/0")
    assert why is not None
    assert "s3cret" not in why


@pytest.mark.django_db(transaction=True)
def test_locusts_csv_of_a_real_short_run_against_a_live_server_is_read(live_server, tmp_path):
    # A real Locust (its own process) against this test's live server, about six seconds: the
    # login page as fast as it goes, and a doctor with a wrong password, whose refused login is
    # a Locust failure (if its packet was answered within the run: on two busy cores the
    # run may end first, and no timing is assumed).
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"password": "Not-The-Password-1", "pace": [0.1, 0.2]}))
    result = load.run_locust(
        live_server.url,
        ["LoginPageProbe", "RecordPageProbe"],
        users=2,
        seconds=6,
        config_file=config,
        prefix=tmp_path / "run",
    )
    pages = result["pages"]
    assert pages["login page"]["requests"] > 0
    assert pages["login page"]["failures"] == 0
    assert pages["login page"]["p99"] >= pages["login page"]["p50"] > 0
    assert pages["Aggregated"]["requests"] == sum(
        p["requests"] for name, p in pages.items() if name != "Aggregated"
    )
    refused = [f for f in result["failures"] if f["page"] == "login packet"]
    if "login packet" in pages:
        assert pages["login packet"]["failures"] == pages["login packet"]["requests"]
        assert sum(f["count"] for f in refused) == pages["login packet"]["failures"]
        assert all("login refused" in f["error"] for f in refused)
    assert [f for f in result["failures"] if f["page"] != "login packet"] == []
    assert result["locust_cpu_cores"] >= 0


def test_missing_locust_statistics_are_a_one_line_error(tmp_path):
    with pytest.raises(load.LoadError, match="no statistics"):
        load.parse_stats(tmp_path / "nothing")
    assert load.parse_failures(tmp_path / "nothing") == []


# -- the command's exit code ----------------------------------------------------------------------


def _fake_run(result: dict[str, Any]) -> Any:
    def run(lab: Any, **kwargs: Any) -> dict[str, Any]:
        return result

    return run


def test_a_missed_goal_exits_non_zero(monkeypatch, capsys):
    rows = [*GOOD[:2], _row("sqlite", 2, True, login=300, record=80)]
    monkeypatch.setattr(load, "run", _fake_run(_result(rows)))
    assert cli.main(["bench", "load", "--quick"]) == 1
    out, err = capsys.readouterr()
    assert "MISSED" in out
    assert "goals missed: 2 processes >= 1.7x of 1 (record page)" in err


def test_report_only_exits_zero_with_a_missed_goal(monkeypatch, capsys):
    rows = [*GOOD[:2], _row("sqlite", 2, True, login=300, record=80)]
    monkeypatch.setattr(load, "run", _fake_run(_result(rows)))
    assert cli.main(["bench", "load", "--quick", "--report-only", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["goals"]["2 processes >= 1.7x of 1 (record page)"] is False


def test_all_goals_met_exits_zero(monkeypatch, capsys):
    monkeypatch.setattr(load, "run", _fake_run(_result(GOOD)))
    assert cli.main(["bench", "load"]) == 0


def test_the_lab_s_disposable_server_satisfies_what_the_benchmark_needs():
    from carevault.attacklab.lab import LabServer

    server: load.Server = LabServer(Path("/nonexistent-never-created"), workers=1)
    assert server.url.startswith("http://127.0.0.1:")
    assert isinstance(server.files.env, dict)


def test_the_steady_throughput_leaves_the_ramp_up_out(tmp_path):
    # Locust's per-second history (its real header): the record page first served at t=103,
    # 10 requests by then, 40 by t=106: 10 requests/s, though the run's average is lower.
    header = (
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,"
        "99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,"
        "Total Average Response Time,Total Min Response Time,Total Max Response Time,"
        "Total Average Content Size"
    )
    tail = ",0,0" + ",0" * 11 + ",{n},0,0,0,0,0,0"  # req/s, fail/s, 11 percentiles, counts
    lines = [header]
    for t, n in [(101, 0), (102, 0), (103, 10), (104, 20), (106, 40)]:
        lines.append(f"{t},4,GET,record page" + tail.format(n=n))
    lines.append("101,4,,Aggregated" + tail.format(n=0))
    (tmp_path / "run_stats_history.csv").write_text("\n".join(lines) + "\n")
    assert load.parse_history(tmp_path / "run") == {"record page": 10.0}
    assert load.parse_history(tmp_path / "missing") == {}
    row = _row("sqlite", 1, True, login=200, record=3)
    row["probes"]["record page"]["pages"]["record page"]["steady_rps"] = 10.0
    assert load._probe_rps(row, "record page") == 10.0
