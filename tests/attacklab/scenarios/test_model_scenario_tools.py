"""The model scenarios' pure helpers: reading the doctor's page, where curves are measured, the
attacker's knowledge and the poison batch file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from carevault.attacklab.scenarios import _modeltools as tools
from carevault.attacklab.scenarios.model_extraction import _session_ended
from carevault.attacklab.scenarios.model_poisoning import write_batch

PAGE = """
<div class="border rounded p-2 mb-2 diagnosis-run">
  <p class="mb-1"><strong class="text-danger">malignant</strong>
   · P(malignant) ≈ 0.8
  · diagnosis-logistic v1 · 2026-12-05 11:00 by doctor1</p>
</div>
<div class="border rounded p-2 mb-2 diagnosis-run">
  <p class="mb-1"><strong class="text-success">benign</strong></p>
</div>
"""


def test_the_newest_run_on_the_page_gives_its_label_and_rounded_confidence() -> None:
    assert tools.newest_run(PAGE) == (1, 0.8)


def test_a_run_without_a_confidence_gives_none_and_a_page_without_runs_nothing() -> None:
    benign = PAGE.split("</div>", 1)[1]
    assert tools.newest_run(benign) == (0, None)
    assert tools.newest_run("<p>No diagnosis has been run for this patient.</p>") is None


def test_curve_points_cover_every_answer_to_forty_then_thin_out_and_end_at_the_last() -> None:
    points = tools.curve_points(133)
    assert points[:40] == list(range(1, 41))
    assert {45, 120} <= set(points)
    assert points[-1] == 133
    assert tools.curve_points(0) == []
    assert tools.curve_points(7) == [1, 2, 3, 4, 5, 6, 7]


def test_the_free_baseline_is_the_twenty_public_cases_alone() -> None:
    know = tools.knowledge()
    assert len(know.public) == tools.PUBLIC_CASES
    assert abs(tools.baseline(know) - 0.958) < 0.001
    # The referee's labels are the recipe's, on cases the attacker never queries.
    assert know.served_eval.shape == (len(know.X_eval),)
    assert tools.gain_points(0.972, 0.958) == 1.4


def test_a_session_ends_on_401_or_a_redirect_to_sign_in_only() -> None:
    assert _session_ended(401, {})
    assert _session_ended(302, {"Location": "/accounts/login/?next=/x"})
    assert not _session_ended(302, {"Location": "/diagnosis/patients/1/"})
    assert not _session_ended(429, {})


def test_the_poison_batch_is_a_csv_with_the_feature_names_and_a_label(tmp_path: Path) -> None:
    names = ("a", "b")
    write_batch(tmp_path / "x.csv", names, np.array([[1.5, 2.0]]), np.array([1]))
    with (tmp_path / "x.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows == [["a", "b", "label"], ["1.5", "2.0", "1"]]
