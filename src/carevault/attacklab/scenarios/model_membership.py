"""Membership inference against the served diagnosis model, with an overfit positive control.

Question: from the model's answers, can an attacker tell whether a given patient's record was in
its training set? The attack is the project's loss-threshold attack (Yeom et al. 2018;
modelguard/membership.py: two-fold held-out threshold, advantage = TPR - FPR). A doctor (doctor1)
asks the diagnosis page, the channel that says most (a confidence rounded to one decimal), about
training cases (members: the public data set's training split) and held-out cases (non-members),
alternately, until the page stops answering (budget, session ended) or the bounds end; the loss
is computed from the released confidence of each case's true label.

Positive control: the attacker trains a deliberately overfit model on the same training split
itself (modelguard.membership.overfit_control) and runs the same attack on the same cases with
its full confidences. The control must show the attack works (advantage >= 0.3); held: the
served model's advantage stays near zero (<= 0.15, the noise of a few dozen cases).
"""

from __future__ import annotations

import numpy as np

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.modelguard.membership import attack_advantage, overfit_control, per_record_loss

from . import _modeltools as tools
from .model_extraction import Attacker, _page

ATTACKER = "doctor1"
CONTROL_MIN = 0.3
SERVED_MAX = 0.15


def _loss(confidence: float, label: int) -> float:
    p_malignant = min(max(confidence, 1e-3), 1 - 1e-3)
    return float(-np.log(p_malignant if label == 1 else 1 - p_malignant))


def run(ctx: Context) -> Outcome:
    know = tools.knowledge()
    split = know.split
    draw = np.random.default_rng(ctx.seed)
    n = 24 if ctx.quick else 40
    members = draw.choice(len(split.X_train), size=n, replace=False)
    non_members = draw.choice(len(split.X_test), size=n, replace=False)
    cases = []
    for m, o in zip(members, non_members, strict=True):
        cases += [(split.X_train[m], int(split.y_train[m]), True)]
        cases += [(split.X_test[o], int(split.y_test[o]), False)]
    ctx.accounts.add(ATTACKER)
    who = Attacker(ctx, ATTACKER)
    pid = tools.patient_of(who.client)
    channel = _page(ctx, who, pid, [c[0] for c in cases])
    answered = cases[: len(channel.X)]
    findings = [f"{len(answered)} cases answered by the page until {channel.stopped}"]
    loss_in = [
        _loss(c, y)
        for (_, y, member), c in zip(answered, channel.confidences, strict=True)
        if member and c is not None
    ]
    loss_out = [
        _loss(c, y)
        for (_, y, member), c in zip(answered, channel.confidences, strict=True)
        if not member and c is not None
    ]
    control = overfit_control(split.X_train, split.y_train)
    xs_in = np.asarray([x for x, _, m in answered if m])
    y_in = np.asarray([y for _, y, m in answered if m])
    xs_out = np.asarray([x for x, _, m in answered if not m])
    y_out = np.asarray([y for _, y, m in answered if not m])
    metrics: dict[str, object] = {"answered": len(answered)}
    defences = ["output obfuscation"]
    if 429 in channel.refusals:
        defences.append("budget")
    if who.sessions_ended:
        defences.append("session check")
    if min(len(loss_in), len(loss_out)) < 4:
        findings.append(
            "too few answers to measure an advantage (fewer than 4 of each): the server stopped "
            "answering first"
        )
        return Outcome(held=True, defences=defences, findings=findings, metrics=metrics)
    served = attack_advantage(np.asarray(loss_in), np.asarray(loss_out))
    same_cases = attack_advantage(
        per_record_loss(control, xs_in, y_in), per_record_loss(control, xs_out, y_out)
    )
    every_case = attack_advantage(
        per_record_loss(control, split.X_train, split.y_train),
        per_record_loss(control, split.X_test, split.y_test),
    )
    metrics.update(
        {
            "served_advantage": round(served, 3),
            "control_advantage_same_cases": round(same_cases, 3),
            "control_advantage_all_cases": round(every_case, 3),
        }
    )
    findings += [
        f"served model (page, rounded confidences): advantage {served:+.2f} on "
        f"{len(loss_in)} members and {len(loss_out)} non-members",
        f"overfit control (attacker's own model, full confidences): advantage "
        f"{same_cases:+.2f} on the same cases, {every_case:+.2f} on the whole data set",
    ]
    works = same_cases >= CONTROL_MIN
    if not works:
        findings.append("the control does not show the attack working: no verdict possible")
    held = works and served <= SERVED_MAX
    return Outcome(held=held, defences=defences, findings=findings, metrics=metrics)


SCENARIO = Scenario(
    name="model.membership-inference",
    category="models",
    attacks="loss-threshold membership inference on the diagnosis page's rounded confidences, "
    "with a deliberately overfit model of the attacker's own as the positive control",
    held_means="the control shows the attack works (advantage >= 0.3) while against the served "
    "model it stays near zero (<= 0.15)",
    bounds=Bounds(requests=200, seconds=120),
    quick_bounds=Bounds(requests=120, seconds=45),
    run=run,
    # Full lab only: it spends doctor1's shared diagnosis budget for an hour and the AI
    # layer ends doctor1's sessions, which later scenarios' honest doctor relies on.
    in_quick=False,
    expect_detection=True,
)
