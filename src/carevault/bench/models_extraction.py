"""``carevault bench models`` (extraction part): the attack lab's table (issue 7, "Output
obfuscation and extraction defence").

For each output policy x attacker: queries answered until the budget or the monitor cut the
attacker off, the stolen model's agreement with ours on the test split at that moment, and its
agreement when nothing cuts it off. Beside it: false alarms on a doctors' workload (real cases
with 3% measurement noise, distinct patients with 5% follow-ups, 30 s apart at the fastest) and
each policy's cost to legitimate users (accuracy, Brier score of the released confidence).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np

from carevault.modelguard.attacks import AttackResult, Gate, equation_solving, retraining
from carevault.modelguard.budgets import QueryBudget
from carevault.modelguard.dataset import load_split
from carevault.modelguard.extraction import ExtractionMonitor
from carevault.modelguard.models import fit
from carevault.modelguard.obfuscation import OutputPolicy, obfuscate

from .timing import format_table

GOAL_AGREEMENT = 0.90
PUBLIC_CASES = 20


def _attack(name: str, gate: Gate, public: Any, x_test: Any, max_q: int) -> AttackResult:
    if name == "equation-solving":
        return equation_solving(gate, public, x_test, max_q, 1)
    if name == "equation-solving, box":
        return equation_solving(gate, public, x_test, max_q, 1, in_box=True)
    return retraining(gate, public, x_test, max_q, 1, adaptive=True)


ATTACKERS = ("equation-solving", "equation-solving, box", "retraining, adaptive")


def doctors_workload(
    monitor: ExtractionMonitor, x_all: Any, doctors: int, per_doctor: int, seed: int = 7
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    alarms: list[str] = []
    for d in range(doctors):
        idx = rng.permutation(len(x_all))[:per_doctor]
        idx[rng.random(per_doctor) < 0.05] = idx[0]  # follow-ups of one patient
        for i in idx:
            x = x_all[i] * (1 + rng.normal(0.0, 0.03, x_all.shape[1]))
            verdict = monitor.observe(f"doctor-{d}", x)
        if verdict.alert:
            alarms.append(verdict.reason)
    return {"doctors": doctors, "queries_each": per_doctor, "false_alarms": len(alarms)}


def policy_costs(model: Any, x_test: Any, y_test: Any) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(3)
    proba = model.predict_proba(x_test)[:, 1]
    full_acc = float(np.mean((proba >= 0.5) == y_test))
    costs = {}
    for policy in OutputPolicy:
        outs = [obfuscate(policy, float(p), rng=rng) for p in proba]
        labels = np.array([o.label for o in outs])
        conf = np.array([o.confidence if o.confidence is not None else o.label for o in outs])
        acc = float(np.mean(labels == y_test))
        costs[policy.value] = {
            "accuracy_loss_points": (full_acc - acc) * 100,
            "brier": float(np.mean((conf - y_test) ** 2)),
        }
    return costs


def run(quick: bool = False) -> dict[str, Any]:
    split = load_split()
    model = fit("logistic", split.X_train, split.y_train)
    public = split.X_train[:PUBLIC_CASES]
    max_q = 120 if quick else 600
    rows: list[dict[str, Any]] = []
    for policy in OutputPolicy:
        for attacker in ATTACKERS:
            guarded = _attack(
                attacker,
                Gate(
                    model,
                    policy,
                    ExtractionMonitor(split.X_train),
                    QueryBudget(),
                    "attacker",
                    timedelta(seconds=30),
                    np.random.default_rng(0),
                ),
                public,
                split.X_test,
                max_q,
            )
            free = _attack(
                attacker,
                Gate(
                    model,
                    policy,
                    None,
                    None,
                    "attacker",
                    timedelta(seconds=30),
                    np.random.default_rng(0),
                ),
                public,
                split.X_test,
                max_q,
            )
            rows.append(
                {
                    "policy": policy.value,
                    "attacker": attacker,
                    "queries_to_cutoff": guarded.queries,
                    "cut_off": guarded.cut_off,
                    "reason": guarded.reason,
                    "agreement_at_cutoff": guarded.agreement,
                    "agreement_uncut": free.agreement,
                    "uncut_queries": free.queries,
                }
            )
    x_all = np.vstack([split.X_train, split.X_test])
    workload = doctors_workload(
        ExtractionMonitor(split.X_train), x_all, 10 if quick else 60, 60 if quick else 200
    )
    costs = policy_costs(model, split.X_test, split.y_test)
    return {
        "benchmark": "models-extraction",
        "quick": quick,
        "attacks": rows,
        "doctors": workload,
        "policy_costs": costs,
        "goals": {
            "every attacker cut off below 90% agreement": all(
                r["cut_off"] and r["agreement_at_cutoff"] <= GOAL_AGREEMENT for r in rows
            ),
            "no false alarm on doctors": workload["false_alarms"] == 0,
            "accuracy loss <= 0.5 points": all(
                c["accuracy_loss_points"] <= 0.5 for c in costs.values()
            ),
        },
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            r["policy"],
            r["attacker"],
            str(r["queries_to_cutoff"]),
            r["reason"][:40] or "-",
            f"{r['agreement_at_cutoff']:.1%}",
            f"{r['agreement_uncut']:.1%} @ {r['uncut_queries']}",
        ]
        for r in result["attacks"]
    ]
    table = format_table(
        [
            "policy",
            "attacker",
            "queries to cut-off",
            "cut by",
            "agreement at cut-off",
            "agreement uncut",
        ],
        rows,
    )
    costs = format_table(
        ["policy", "accuracy loss (points)", "Brier"],
        [
            [p, f"{c['accuracy_loss_points']:.2f}", f"{c['brier']:.4f}"]
            for p, c in result["policy_costs"].items()
        ],
    )
    d = result["doctors"]
    goals = "\n".join(f"  [{'met' if ok else 'MISSED'}] {g}" for g, ok in result["goals"].items())
    return (
        f"{table}\n\n{costs}\n\ndoctors' workload: {d['doctors']} doctors x {d['queries_each']} "
        f"queries, false alarms: {d['false_alarms']}\n{goals}"
    )
