"""Extraction of the served diagnosis model through every channel a doctor has.

A doctor (doctor1) steals the logistic diagnosis model over HTTP, through each channel in turn,
until the server stops answering (budget 429, extraction monitor 403) or the scenario's bounds:

* ``api``: ``POST /api/v1/patients/<id>/diagnoses``, label only;
* ``page``: the doctor's diagnosis page (form post, then the page read back): label and the
  confidence rounded to one decimal;
* ``homomorphic``: ``POST /api/v1/models/diagnosis/homomorphic``, batches of encrypted patients
  (the project's own client, modelguard/homomorphic_client.py) decrypted by the attacker.

Its queries are real aspirates (the unlabelled part of the public data set's training split):
what the extraction monitor cannot tell from a doctor's workload, so the budgets are what has to
stop it. Attack algorithms: retraining a logistic surrogate on the answered labels together with
the 20 published cases and their diagnoses (modelguard.attacks.surrogate_agreement), and, where
scores come back (rounded confidences, decrypted encrypted scores), equation solving by least
squares (modelguard.attacks.solve_linear). The attacker's tooling and how the referee gets the
served model's labels on the evaluation set are in ``_modeltools``.

Reported per channel: agreement of the stolen model with the served one on the held-out split
against answered queries, next to the free baseline (the 20 public cases alone, ~95.8%).
Held: on every channel, the model the attacker holds when it is cut off (or its bounds end)
agrees at most 1 point more than the baseline. A pooled curve (all channels' answers together,
the same doctor) is reported too and counts: the issue asks for budgets shared across channels.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import numpy as np
from numpy.typing import NDArray

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.attacklab.target import AttackClient
from carevault.client import LoginFailed, Response

from . import _modeltools as tools

ATTACKER = "doctor1"
GOAL_POINTS = 1.0
HE_BATCH = 100
NOT_CUT = "its query cap or the bounds"


def _patient(client: AttackClient) -> str:
    answer = client.get_json(tools.API_PATIENTS)
    results = answer.get("results") or []
    if not results:
        raise RuntimeError("the attacking doctor has no patient to run diagnoses for")
    return str(results[0]["id"])


class Attacker:
    """The doctor's session; when the AI layer ends it, the attacker signs in again from its
    next machine (a persistent attacker does), at most ``MAX_LOGINS`` times in all."""

    MAX_LOGINS = 6

    def __init__(self, ctx: Context, username: str = ATTACKER) -> None:
        self.ctx = ctx
        self.username = username
        self.logins = 0
        self.sessions_ended = 0
        self.refused_login = ""
        self.client = self._login()

    def _login(self) -> AttackClient:
        self.logins += 1
        client = self.ctx.client(self.logins)
        client.login(self.username, self.ctx.password(self.username))
        return client

    def relogin(self) -> bool:
        self.sessions_ended += 1
        if self.logins >= self.MAX_LOGINS or not self.ctx.within_bounds(reserve=6):
            return False
        try:
            self.client = self._login()
        except (LoginFailed, RuntimeError) as exc:
            self.refused_login = str(exc)
            return False
        return True


def _session_ended(status: int, headers: dict[str, str]) -> bool:
    location = headers.get("Location", "") or headers.get("location", "")
    return status == 401 or (status == 302 and "/accounts/login" in location)


class Channel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.X: list[NDArray[np.float64]] = []
        self.labels: list[int] = []
        self.scores: list[float] = []
        self.confidences: list[float | None] = []
        self.stopped = NOT_CUT
        self.refusals: dict[int, int] = {}

    def refused(self, status: int, code: str) -> None:
        self.refusals[status] = self.refusals.get(status, 0) + 1
        self.stopped = f"HTTP {status} {code}".strip()


def _api(ctx: Context, who: Attacker, pid: str, queries: list[NDArray[np.float64]]) -> Channel:
    channel = Channel("api")
    path = f"{tools.API_PATIENTS}/{pid}/diagnoses"
    for x in queries:
        if not ctx.within_bounds(reserve=12):
            break
        body = {"features": [float(v) for v in x], "model": "logistic"}
        answer = who.client.post_json(path, body)
        if _session_ended(answer.status, answer.headers):
            if not who.relogin():
                channel.refused(answer.status, "session ended, sign-in refused")
                break
            answer = who.client.post_json(path, body)
        if answer.status == 201:
            channel.X.append(x)
            channel.labels.append(1 if answer.json().get("label") == "malignant" else 0)
            continue
        code = ""
        with contextlib.suppress(ValueError, AttributeError):
            code = str(answer.json().get("error", {}).get("code", ""))
        channel.refused(answer.status, code)
        break
    return channel


def _page(ctx: Context, who: Attacker, pid: str, queries: list[NDArray[np.float64]]) -> Channel:
    channel = Channel("page")
    path = f"/diagnosis/patients/{pid}/"
    for x in queries:
        if not ctx.within_bounds(reserve=8):
            break
        fields = {"model": "logistic", "lab_result": ""}
        fields.update({f"f{i}": repr(float(v)) for i, v in enumerate(x)})
        answer = who.client.post_form(path, fields)
        if _session_ended(answer.status, answer.headers):
            if not who.relogin():
                channel.refused(answer.status, "session ended, sign-in refused")
                break
            answer = who.client.post_form(path, fields)
        if answer.status != 302:
            channel.refused(answer.status, "cut off" if answer.status == 403 else "")
            break
        read = who.client.get(path)
        if _session_ended(read.status, read.headers) and who.relogin():
            read = who.client.get(path)
        run = tools.newest_run(read.body.decode("utf-8", "replace")) if read.ok else None
        if run is None:
            channel.refused(read.status, "no result on the page")
            break
        channel.X.append(x)
        channel.labels.append(run[0])
        channel.confidences.append(run[1])
        if run[1] is not None:
            channel.scores.append(tools.logit(run[1]))
    return channel


def _he_post(client: AttackClient, body: bytes) -> Response:
    if client.csrf_token() is None:
        client.get("/accounts/login/")
    return client.request(
        "POST",
        tools.HE_PATH,
        body=body,
        headers={
            "Content-Type": "application/octet-stream",
            "Origin": client.base_url,
            "Referer": client.base_url + "/",
            "X-CSRFToken": client.csrf_token() or "",
        },
    )


def _homomorphic(ctx: Context, who: Attacker, queries: list[NDArray[np.float64]]) -> Channel:
    from carevault.modelguard.homomorphic_client import HomomorphicClient

    channel = Channel("homomorphic")
    he = HomomorphicClient(queries[0].shape[0])
    start, size = 0, HE_BATCH
    while start < len(queries):
        if not ctx.within_bounds(reserve=2):
            break
        batch = np.asarray(queries[start : start + size])
        request = he.encrypt_rows(batch)
        answer = _he_post(who.client, request)
        if _session_ended(answer.status, answer.headers):
            if not who.relogin():
                channel.refused(answer.status, "session ended, sign-in refused")
                break
            answer = _he_post(who.client, request)
        if answer.status == 429 and size > 1:
            size = max(1, size // 4)  # a smaller batch may still fit what is left
            channel.refusals[429] = channel.refusals.get(429, 0) + 1
            continue
        if answer.status != 200:
            channel.refused(answer.status, "budget" if answer.status == 429 else "")
            break
        logits = he.decrypt_logits(answer.body, len(batch))
        channel.X.extend(batch)
        channel.labels.extend(int(v >= 0) for v in logits)
        channel.scores.extend(float(v) for v in logits)
        start += len(batch)
    return channel


def _curves(know: tools.Knowledge, channel: Channel) -> dict[str, list[list[float]]]:
    n = len(channel.X)
    curves = {
        channel.name: [
            [k, round(tools.label_agreement(know, channel.X[:k], channel.labels[:k]), 4)]
            for k in tools.curve_points(n)
        ]
    }
    if len(channel.scores) == n and n > know.X_eval.shape[1] + 1:
        start = know.X_eval.shape[1] + 1
        curves[f"{channel.name} (solved scores)"] = [
            [k, round(tools.solved_agreement(know, channel.X[:k], channel.scores[:k]), 4)]
            for k in tools.curve_points(n)
            if k >= start
        ]
    return curves


def run(ctx: Context, only: str | None = None) -> Outcome:
    """All three channels in turn (``only=None``), or one of them."""
    know = tools.knowledge()
    base = tools.baseline(know)
    ctx.accounts.add(ATTACKER)
    who = Attacker(ctx)
    pid = _patient(who.client)
    # The same real cases in the same order whichever channel asks (seeded by the run, not by
    # the scenario's place), so the channels' curves differ by what each channel answers only.
    draw = random.Random(f"{ctx.seed}:model-extraction")  # noqa: S311 - attack choices
    order = [know.pool[int(i)] for i in draw.sample(range(len(know.pool)), len(know.pool))]
    cap = 60 if ctx.quick else 120
    if only is None:  # all channels in one run: each its own slice, as a pooling attacker would
        slices = [order[:cap], order[cap : 2 * cap], order[2 * cap :]]
    else:
        slices = [order[:cap], order[:cap], order]
    channels = []
    if only in (None, "api"):
        channels.append(_api(ctx, who, pid, slices[0]))
    if only in (None, "page"):
        channels.append(_page(ctx, who, pid, slices[1]))
    if only in (None, "homomorphic"):
        channels.append(_homomorphic(ctx, who, slices[2]))
    pooled = Channel("pooled, every channel")
    for c in channels:
        pooled.X += c.X
        pooled.labels += c.labels
    pooled.stopped = "every channel stopped"
    every = [*channels, pooled] if len(channels) > 1 else channels

    curves: dict[str, list[list[float]]] = {}
    findings: list[str] = [f"free baseline (20 public cases, no query): {base:.1%}"]
    worst = -100.0
    metrics_spread: dict[str, list[float]] = {}
    answered_labels = 0
    disagreements = 0
    for c in every:
        if c is not pooled and c.X:
            recipe = know.recipe.predict(np.asarray(c.X))
            disagreements += int(np.sum(recipe != np.asarray(c.labels)))
            answered_labels += len(c.X)
        if not c.X:
            findings.append(
                f"{c.name}: no query answered ({c.stopped})"
                + (
                    ": the doctor's budget was already spent, on this or another channel "
                    "(budgets are shared across processes; homomorphic and API share one)"
                    if 429 in c.refusals
                    else ""
                )
            )
            continue
        these = _curves(know, c)
        curves.update(these)
        for name, points in these.items():
            final = points[-1][1]
            peak = max(a for _, a in points)
            gain = tools.gain_points(final, base)
            worst = max(worst, gain)
            findings.append(
                f"{name}: {len(c.X)} answered until {c.stopped}; stolen model agrees {final:.1%} "
                f"({gain:+.1f} points over the baseline; best along the way {peak:.1%})"
            )
        low, mean, high = tools.draw_spread(know, len(c.X))
        findings.append(
            f"{c.name}: for scale, {len(c.X)} real cases drawn at random and labelled by the "
            f"served model give {low:.1%} to {high:.1%} (mean {mean:.1%}, 20 draws; one "
            f"evaluation case is {100 / len(know.X_eval):.1f} points)"
        )
        metrics_spread[c.name] = [round(low, 4), round(mean, 4), round(high, 4)]
    findings.append(
        f"referee check: {disagreements} of {answered_labels} answered labels differ from the "
        "training recipe's model the agreement is measured against"
    )
    he_channel = next((c for c in channels if c.name == "homomorphic"), None)
    if he_channel is not None and he_channel.scores:
        exact = know.recipe.decision_function(np.asarray(he_channel.X))
        ratio = np.asarray(he_channel.scores) / exact
        findings.append(
            f"homomorphic scores decrypted to {ratio.min():.2f}x-{ratio.max():.2f}x the exact "
            "logits (server-side blinding noise)"
            if ratio.std() > 0.01
            else "homomorphic scores decrypted to the EXACT logits (no noise)"
        )
    if who.sessions_ended:
        findings.append(
            f"the server ended the attacker's session {who.sessions_ended} times (AI layer); "
            f"it signed in again {who.logins - 1} times"
            + (f"; sign-in then refused: {who.refused_login}" if who.refused_login else "")
        )
    statuses = {s for c in channels for s in c.refusals}
    defences = ["output obfuscation"]
    if who.sessions_ended:
        defences.append("session check")
    if who.refused_login:
        defences.append("suspension")
    if 429 in statuses:
        defences.append("budget")
    if 403 in statuses:
        defences.append("extraction monitor")
    cut = all(c.X == [] or c.stopped != NOT_CUT for c in channels)
    held = cut and worst <= GOAL_POINTS
    if any(c.stopped == NOT_CUT and c.X for c in channels):
        findings.append(
            "a channel was still answering when the scenario's bounds ended: not cut off"
        )
    metrics: dict[str, Any] = {
        "extraction": {"baseline": round(base, 4), "channels": curves},
        "worst_gain_points": worst,
        "random_draw_spread": metrics_spread,
    }
    leaked = sum(len(c.X) for c in channels) if worst > GOAL_POINTS else 0
    return Outcome(held, defences, leaked=leaked, findings=findings, metrics=metrics)


CHANNELS = {
    "api": "the label-only JSON API (POST /api/v1/patients/<id>/diagnoses)",
    "page": "the doctor's diagnosis page (label and a confidence rounded to one decimal)",
    "homomorphic": "the homomorphic endpoint (encrypted batches, decrypted by the attacker)",
}


def _scenario(channel: str) -> Scenario:
    def run_channel(ctx: Context) -> Outcome:
        return run(ctx, channel)

    return Scenario(
        name=f"model.extraction-{channel}",
        category="models",
        attacks=f"extraction of the diagnosis model through {CHANNELS[channel]}: retraining on "
        "real cases with the answered labels"
        + (", equation solving on the returned scores" if channel != "api" else ""),
        held_means="the stolen model agrees at most 1 point above the free baseline of the 20 "
        "public cases when the server stops answering (budget, monitor, session ended)",
        bounds=Bounds(requests=300, seconds=180),
        quick_bounds=Bounds(requests=160, seconds=60),
        run=run_channel,
        # Full lab only: spends doctor1's shared budgets for an hour (see model_membership).
        in_quick=False,
        expect_detection=channel != "homomorphic",
    )


SCENARIOS = [_scenario(channel) for channel in CHANNELS]
