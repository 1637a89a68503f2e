"""`carevault bench policy` compares the learned policy with always-strongest and a rule table;
not a timed test, so this checks only that a quick run measures every item and reports the
goals (and that no policy picked below the floor, which is not a matter of timing)."""

from __future__ import annotations

import json

from carevault import cli
from carevault.bench import policy as bench_policy


def test_a_quick_policy_benchmark_reports_every_measure_as_json(capsys):
    assert cli.main(["bench", "policy", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    policies = result["policies"]
    assert set(policies) == {"learned", "always-strongest", "rule table"}
    for part in policies.values():
        assert part["cpu_s"] > 0
        assert part["below_floor"] == 0
        assert sum(part["suites"].values()) == result["workload"]["writes"]
        assert 1 <= part["mean_level"] <= 4
    assert policies["always-strongest"]["cpu_saved_vs_strongest"] == 0
    assert policies["always-strongest"]["mean_level"] == 4
    decide = result["decide"]
    assert 0 < decide["p50_us"] <= decide["p99_us"] <= decide["max_us"]
    assert result["below_floor_under_system_floor"]["below"] == 0
    assert set(result["goals"]) == {
        "CPU saved vs always-strongest >= 30%",
        "decision p99 <= 50 us",
        "no decision below the floor",
    }
    assert result["goals"]["no decision below the floor"] is True
    # The table for people, from the same result.
    table = bench_policy.render(result)
    assert "goal p99 <= 50 us" in table
    assert "saved vs strongest" in table


def test_the_workload_mixes_sizes_classes_roles_and_devices():
    writes = bench_policy.workload(1, 2_000)
    inputs = [x for _, x in writes]
    assert {x.role for x in inputs} == {"doctor", "patient", "labtech", "admin", "system"}
    assert {x.data_class.value for x in inputs} == {"ordinary", "sensitive"}
    assert any(x.constrained_device for x in inputs)
    assert (
        min(x.payload_bytes for x in inputs)
        < 256
        < (1 << 20)
        <= max(x.payload_bytes for x in inputs)
    )
    assert all(0.0 <= x.risk <= 1.0 for x in inputs)
