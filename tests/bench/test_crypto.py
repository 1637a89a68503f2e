"""`carevault bench crypto` measures real work and reports ratios; it is not a timed test, so
these tests check only that a quick run measures every item and is internally consistent."""

from __future__ import annotations

import json

from carevault import cli


def test_a_quick_crypto_benchmark_reports_every_measure_as_json(capsys):
    assert cli.main(["bench", "crypto", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    field = result["field"]
    for measure in ("field_us", "envelope_us", "aesgcm_us", "fernet_us"):
        assert field[measure] > 0
    # Ratios are medians of per-round ratios (both sides ran in the same round), so they are
    # close to, not exactly, the ratio of the median times.
    for ratio in ("field_vs_aesgcm", "envelope_vs_aesgcm", "fernet_vs_field"):
        assert field[ratio] > 0
    assert field["fields_per_row"] >= 2
    assert result["stream"]["encrypt_mb_s"] > 0
    assert result["stream"]["decrypt_mb_s"] > 0
    assert {s["algorithm"] for s in result["signatures"]} == {
        "Ed25519",
        "ECDSA-P256-SHA256",
        "RSA-PSS-3072-SHA256",
    }
    assert set(result["goals"]) == {
        "field_vs_aesgcm <= 1.5",
        "fernet_vs_field >= 5",
        "stream_vs_openssl >= 0.6",
    }


def test_the_table_names_each_goal(capsys):
    assert cli.main(["bench", "crypto", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "goal <= 1.5x" in out
    assert "goal >= 5x" in out
    assert "goal >= 0.6" in out
    # Each goal sits next to its verdict, whatever this machine measured.
    assert out.count("MET") + out.count("MISSED") >= 6
