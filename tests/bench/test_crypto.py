"""`carevault bench crypto` measures real work and reports ratios; it is not a timed test, so
these tests check only that a quick run measures every item and is internally consistent."""

from __future__ import annotations

import json

from carevault import cli


def test_a_quick_crypto_benchmark_reports_every_measure_as_json(capsys):
    assert cli.main(["bench", "crypto", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    field = result["field"]
    assert field["envelope_us"] > 0
    assert field["aesgcm_us"] > 0
    assert field["fernet_us"] > 0
    assert abs(field["envelope_vs_aesgcm"] - field["envelope_us"] / field["aesgcm_us"]) < 1e-6
    assert result["stream"]["encrypt_mb_s"] > 0
    assert result["stream"]["decrypt_mb_s"] > 0
    assert {s["algorithm"] for s in result["signatures"]} == {
        "Ed25519",
        "ECDSA-P256-SHA256",
        "RSA-PSS-3072-SHA256",
    }
    assert set(result["goals"]) == {
        "envelope_vs_aesgcm <= 1.5",
        "fernet_vs_envelope >= 5",
        "stream_vs_openssl >= 0.6",
    }


def test_the_table_names_each_goal(capsys):
    assert cli.main(["bench", "crypto", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "goal <= 1.5x" in out
    assert "goal >= 5x" in out
    assert "goal >= 0.6" in out
