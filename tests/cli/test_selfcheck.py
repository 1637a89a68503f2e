"""`carevault selfcheck`: the crypto self-check, every suite in its report."""

from __future__ import annotations

import json

import pytest

from carevault import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_selfcheck_passes_and_reports_every_suite(capsys):
    code, out, _ = run(capsys, "selfcheck", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True
    names = {c["name"] for c in report["checks"]}
    assert "suite RSA-3072-OAEP-AES-256-GCM" in names
    assert "AES-GCM known answer" in names
