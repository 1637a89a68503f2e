"""The report: a table for people, JSON for CI, and one self-contained HTML page."""

from __future__ import annotations

import re

from carevault.attacklab import html_report, report
from carevault.attacklab.bounds import Bounds
from carevault.attacklab.observe import Detection
from carevault.attacklab.runner import Result, exit_status
from carevault.attacklab.scenario import Outcome, Scenario


def scenario(name: str, *, expect: bool = True) -> Scenario:
    return Scenario(
        name=name,
        category="authentication",
        attacks="guesses passwords against one account",
        held_means="the right password is refused once paused",
        bounds=Bounds(10, 5),
        run=lambda ctx: Outcome(held=True),
        expect_detection=expect,
    )


def results() -> list[Result]:
    held = Result(
        scenario("auth.a"),
        "held",
        1.5,
        40,
        outcome=Outcome(held=True, defences=["throttle"], findings=["<script>alert(1)</script>"]),
        detection=Detection(observed=True, incidents=[{"id": 1}], first_incident_after=12),
        started=1000.0,
    )
    held.detection.level = "step-up"
    failed = Result(
        scenario("auth.b"),
        "failed",
        2.0,
        10,
        outcome=Outcome(
            held=False,
            leaked=2,
            metrics={"extraction": {"baseline": 0.958, "channels": {"api": [[0, 0.95]]}}},
        ),
        detection=Detection(observed=True),
        started=1002.0,
    )
    skipped = Result(scenario("auth.c"), "skipped", 0.0, 0, reason="needs the data directory")
    return [held, failed, skipped]


def test_the_summary_counts_what_held_leaked_and_was_detected():
    s = report.summary(results())
    assert (s["held"], s["failed"], s["skipped"], s["leaked"]) == (1, 1, 1, 2)
    assert (s["detected"], s["detection_expected"]) == (1, 2)
    assert s["median_requests_to_incident"] == 12


def test_any_failed_defence_makes_the_exit_status_non_zero():
    assert exit_status(results()) == 1
    assert exit_status(results()[:1]) == 0


def test_the_table_names_each_scenario_its_defences_and_the_ai_layers_answer():
    text = report.table(results())
    assert "auth.a" in text
    assert "throttle" in text
    assert "after 12 req (step-up)" in text
    assert "missed" in text
    assert "1 held, 1 failed" in text


def test_the_html_report_is_self_contained_and_escapes_what_the_run_found():
    data = report.to_json(results(), target="lab", quick=True, extra={})
    page = html_report.render(data)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)=["']?https?:""", page), "no CDN, no remote asset"
    assert "Chart.js" in page, "the chart library is inlined"
    charts = html_report.chart_data(data)
    assert charts["extraction"]["channels"] == {"api": [[0.0, 0.95]]}
    assert [d["name"] for d in charts["delays"]] == ["auth.a", "auth.b"]
