"""`carevault attack list | run | lab`: the scenarios listed, targets outside loopback refused
in one line, unknown scenarios named, and a run against a server that is not there reported as
errors with a non-zero exit (no traceback)."""

from __future__ import annotations

import json

import pytest

from carevault import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_scenario_with_its_bounds_and_what_held_means(capsys):
    code, out, _ = run(capsys, "attack", "list", "--json")
    listed = json.loads(out)
    assert code == 0
    assert {"authentication"} <= {s["category"] for s in listed}
    assert all(s["bounds"]["requests"] >= 0 and s["held_means"] for s in listed)


def test_a_target_outside_loopback_is_refused_in_one_line(capsys):
    code, out, err = run(capsys, "attack", "run", "all", "--target", "http://192.0.2.10:8000")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "--i-own-this-host 192.0.2.10" in err


def test_an_unknown_scenario_is_named_in_one_line(capsys):
    code, _, err = run(capsys, "attack", "run", "no.such", "--target", "http://127.0.0.1:9")
    assert code == 1
    assert "no scenario 'no.such'" in err
