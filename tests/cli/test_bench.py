"""`carevault bench models`: only the parts asked for, an unknown part refused by the parser."""

from __future__ import annotations

import json

import pytest

from carevault import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_bench_models_runs_the_parts_asked_for_and_prints_their_tables(capsys):
    code, out, _ = run(capsys, "bench", "models", "--quick", "--part", "extraction", "--json")
    assert code == 0
    report = json.loads(out)
    assert list(report["parts"]) == ["extraction"]
    assert report["parts"]["extraction"]["quick"] is True


def test_bench_models_refuses_an_unknown_part(capsys):
    with pytest.raises(SystemExit):
        run(capsys, "bench", "models", "--part", "oracle")
