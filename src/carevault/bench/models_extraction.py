"""``carevault bench models`` (extraction part): the attack lab's table (issue 7, "Output
obfuscation and extraction defence").

For each output policy x attacker: queries answered until the monitor cut the attacker off (a
full budget window only makes a patient attacker wait, so it shows as time taken), the stolen
model's agreement with ours on the test split at that moment, the best agreement it held at any
point before, how many queries the same attacker needs to pass 90% when nothing stops it, and
the verdict against the goal (never above 90% before the cut-off). Then the same for the
configuration each kind of client actually gets (:mod:`carevault.modelguard.guard`), the
agreement an attacker gets for free from the published data set, false alarms on doctors'
workloads (real cases with 3% measurement noise, distinct patients with 5% follow-ups, 30 s
apart at the fastest), and each policy's cost to legitimate users (accuracy, Brier score of the
released confidence).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np

from carevault.modelguard.attacks import (
    AttackResult,
    Gate,
    equation_solving,
    real_cases,
    retraining,
    surrogate_agreement,
)
from carevault.modelguard.budgets import BudgetLimits, QueryBudget
from carevault.modelguard.dataset import load_split
from carevault.modelguard.extraction import ExtractionMonitor
from carevault.modelguard.guard import DEFAULT_CONFIG
from carevault.modelguard.models import fit
from carevault.modelguard.obfuscation import OutputPolicy, obfuscate
from carevault.platform.tables import format_table

GOAL_AGREEMENT = 0.90
PUBLIC_CASES = 20
ATTACKERS = (
    "equation-solving",
    "equation-solving, box",
    "retraining, adaptive",
    "retraining, real cases",
)


def _attack(name: str, gate: Gate, split: Any, max_q: int, curve: bool) -> AttackResult:
    public = split.X_train[:PUBLIC_CASES]
    if name == "equation-solving":
        return equation_solving(gate, public, split.X_test, max_q, 1, curve=curve)
    if name == "equation-solving, box":
        return equation_solving(gate, public, split.X_test, max_q, 1, in_box=True, curve=curve)
    if name == "retraining, adaptive":
        return retraining(gate, public, split.X_test, max_q, 1, adaptive=True, curve=curve)
    # Real, unlabelled aspirates the attacker holds: the training cases it was not given as
    # "public", never the test split the agreement is measured on.
    return real_cases(gate, split.X_train[PUBLIC_CASES:], split.X_test, max_q, 1, curve=curve)


def _gate(model: Any, policy: OutputPolicy, monitor: Any, budget: Any) -> Gate:
    return Gate(
        model,
        policy,
        monitor,
        budget,
        "attacker",
        timedelta(seconds=30),
        np.random.default_rng(0),
    )


def _row(
    model: Any,
    split: Any,
    policy: OutputPolicy,
    attacker: str,
    limits: BudgetLimits,
    max_q: int,
    uncut: dict[tuple[OutputPolicy, str], AttackResult],
) -> dict[str, Any]:
    key = (policy, attacker)
    if key not in uncut:  # the same for every budget: nothing stops or slows it
        uncut[key] = _attack(attacker, _gate(model, policy, None, None), split, max_q, True)
    free = uncut[key]
    guarded = _attack(
        attacker,
        _gate(model, policy, ExtractionMonitor(split.X_train), QueryBudget(limits)),
        split,
        max_q,
        False,
    )
    # The guarded run is a prefix of the uncut one (attacks.py), so what the attacker held at
    # each checkpoint before its cut-off is the uncut curve up to there.
    peak = max(
        [guarded.agreement, *(a for n, a in free.curve if n <= guarded.queries)],
    )
    to_goal = free.queries_to_exceed(GOAL_AGREEMENT)
    return {
        "policy": policy.value,
        "attacker": attacker,
        "queries_to_cutoff": guarded.queries,
        "cut_off": guarded.cut_off,
        "reason": guarded.reason,
        "hours_taken": guarded.elapsed.total_seconds() / 3600,
        "agreement_at_cutoff": guarded.agreement,
        "peak_agreement": peak,
        "uncut_queries_to_90": to_goal,
        "agreement_uncut": free.agreement,
        "uncut_queries": free.queries,
        # Met: the stolen model never agreed on more than 90% of the test cases, however far
        # the attacker got. A budget that only slowed it does not count as a cut-off.
        "goal_met": peak <= GOAL_AGREEMENT,
    }


def doctors_workload(
    monitor: ExtractionMonitor, x_all: Any, doctors: int, per_doctor: int, seed: int = 7
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    alarms: list[str] = []
    lowest_w = 1.0  # how close the PRADA test came to alarming (it alarms below delta)
    for d in range(doctors):
        idx = rng.permutation(len(x_all))[:per_doctor]
        idx[rng.random(per_doctor) < 0.05] = idx[0]  # follow-ups of one patient
        alert = ""
        for i in idx:
            x = x_all[i] * (1 + rng.normal(0.0, 0.03, x_all.shape[1]))
            verdict = monitor.observe(f"doctor-{d}", x)
            lowest_w = min(lowest_w, verdict.statistic)
            if verdict.alert and not alert:
                alert = verdict.reason
        if alert:
            alarms.append(alert)
    return {
        "seed": seed,
        "doctors": doctors,
        "queries_each": per_doctor,
        "false_alarms": len(alarms),
        "alarm_reasons": alarms,
        "lowest_w": lowest_w,
        "delta": monitor.delta,
    }


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
            "accuracy": acc,
            "accuracy_loss_points": (full_acc - acc) * 100,
            "brier": float(np.mean((conf - y_test) ** 2)),
        }
    return costs


def run(quick: bool = False) -> dict[str, Any]:
    split = load_split()
    model = fit("logistic", split.X_train, split.y_train)
    max_q = 120 if quick else 600
    lab_limits = BudgetLimits()  # the same budget for every policy, so only the policy differs
    uncut: dict[tuple[OutputPolicy, str], AttackResult] = {}
    rows = [
        _row(model, split, policy, attacker, lab_limits, max_q, uncut)
        for policy in OutputPolicy
        for attacker in ATTACKERS
    ]
    deployed = [
        {
            "client_kind": kind.value,
            **_row(model, split, cfg.policy, attacker, cfg.limits, max_q, uncut),
        }
        for kind, cfg in DEFAULT_CONFIG.items()
        for attacker in ATTACKERS
    ]
    # What the published data set gives an attacker without a single query: a logistic model
    # trained on the public cases with their published (true) diagnoses.
    public = split.X_train[:PUBLIC_CASES]
    free_baseline = surrogate_agreement(
        list(public), [int(v) for v in split.y_train[:PUBLIC_CASES]], model, split.X_test
    )
    x_all = np.vstack([split.X_train, split.X_test])
    seeds = (7,) if quick else (7, 8, 9)
    workloads = [
        doctors_workload(
            ExtractionMonitor(split.X_train), x_all, 10 if quick else 60, 60 if quick else 200, s
        )
        for s in seeds
    ]
    costs = policy_costs(model, split.X_test, split.y_test)
    false_alarms = sum(w["false_alarms"] for w in workloads)
    return {
        "benchmark": "models-extraction",
        "quick": quick,
        "max_queries": max_q,
        "attacks": rows,
        "deployed": deployed,
        "free_baseline_agreement": free_baseline,
        "doctors": workloads,
        "policy_costs": costs,
        "goals": {
            "every attacker held to <= 90% agreement, every policy": all(
                r["goal_met"] for r in rows
            ),
            **{
                f"every attacker held to <= 90% agreement, {kind.value} configuration": all(
                    r["goal_met"] for r in deployed if r["client_kind"] == kind.value
                )
                for kind in DEFAULT_CONFIG
            },
            "no false alarm on doctors": false_alarms == 0,
            "accuracy loss <= 0.5 points": all(
                c["accuracy_loss_points"] <= 0.5 for c in costs.values()
            ),
        },
    }


def _attack_rows(rows: list[dict[str, Any]], first: str) -> list[list[str]]:
    out = []
    for r in rows:
        to_90 = r["uncut_queries_to_90"]
        out.append(
            [
                r[first],
                r["attacker"],
                str(r["queries_to_cutoff"]),
                r["reason"].removeprefix("monitor: ")[:44] if r["cut_off"] else "not cut off",
                f"{r['hours_taken']:.1f}",
                f"{r['agreement_at_cutoff']:.1%}",
                f"{r['peak_agreement']:.1%}",
                "never" if to_90 is None else str(to_90),
                f"{r['agreement_uncut']:.1%} @ {r['uncut_queries']}",
                "met" if r["goal_met"] else "MISSED",
            ]
        )
    return out


HEADERS = [
    "attacker",
    "answered",
    "cut off by monitor",
    "hours",
    "agreement at end",
    "peak agreement",
    "uncut: queries to >90%",
    "uncut agreement",
    "goal",
]


def render(result: dict[str, Any]) -> str:
    table = format_table(["policy", *HEADERS], _attack_rows(result["attacks"], "policy"))
    deployed = format_table(
        ["client kind", *HEADERS], _attack_rows(result["deployed"], "client_kind")
    )
    costs = format_table(
        ["policy", "accuracy", "accuracy loss (points)", "Brier"],
        [
            [p, f"{c['accuracy']:.1%}", f"{c['accuracy_loss_points']:.2f}", f"{c['brier']:.4f}"]
            for p, c in result["policy_costs"].items()
        ],
    )
    doctors = "\n".join(
        f"doctors' workload (seed {d['seed']}): {d['doctors']} doctors x {d['queries_each']} "
        f"queries, false alarms: {d['false_alarms']} (lowest Shapiro-Wilk W "
        f"{d['lowest_w']:.3f}, alarm below {d['delta']})"
        for d in result["doctors"]
    )
    goals = "\n".join(f"  [{'met' if ok else 'MISSED'}] {g}" for g, ok in result["goals"].items())
    return (
        f"attack lab, every policy (budget 40/h, 200/day; up to {result['max_queries']} "
        f"queries each)\n{table}\n\n"
        f"deployed configuration per client kind\n{deployed}\n\n"
        f"free baseline: a model trained on the {PUBLIC_CASES} public cases with their "
        f"published labels, no query, agrees on {result['free_baseline_agreement']:.1%}\n\n"
        f"{costs}\n\n{doctors}\n{goals}"
    )
