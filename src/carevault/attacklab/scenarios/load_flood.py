"""Floods within bounds, while an honest doctor keeps working: does the server keep serving them?

``load.login-flood``
    Two attacker addresses, a dozen threads: login challenges as fast as the server gives
    them, and login packets with wrong passwords for names that do not exist and for one real
    account (``patient3``). Meanwhile ``doctor1``, logged in on a ward computer, reads its pages,
    and a second ward computer logs ``doctor1`` in during the flood.
``load.request-flood``
    Four addresses request pages as fast as they can: the login page, login challenges, and,
    from one address logged in as ``patient3``, the patient's own record over and over.

The honest client's success rate and latency (p50/p95) are measured before and during the
flood. Held: the honest users are served (at least 99% of their requests succeed, none is
answered 429, 403 or with the second-factor or login page) and the flood is throttled (the
attackers meet 429s, or their session is ended). Absolute latency is reported, not judged (the
lab shares two cores with everything else): the p95 ratio during/before is in the metrics.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from carevault.attacklab.bounds import BoundReached, Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.attacklab.target import AttackClient
from carevault.client import LoginFailed

from ._payloads import latency_summary

HONEST = "doctor1"
ATTACKED = "patient3"
# Few enough that each address reaches its limits (60 challenges a minute, failed logins) within
# a quick run: a login costs the server a password hash, so two cores answer a few dozen a second.
ADDRESSES = {"login": 2, "request": 4}
WORKERS = 12
HONEST_PAGES = ("/api/v1/me", "/api/v1/me", "/api/v1/me", "/clinic/doctor/")
HONEST_PAUSE = 0.25  # a busy doctor's clicks, compressed


class HonestProbe:
    """The honest doctor on a ward computer: reads pages at a steady pace, records each answer."""

    def __init__(self, ctx: Context) -> None:
        ctx.honest_accounts.add(HONEST)
        self.ctx = ctx
        self.client = ctx.honest_client(1)
        self.client.login(HONEST, ctx.password(HONEST))
        self.answers: list[tuple[str, int, float, str]] = []  # phase, status, seconds, location

    def read_for(self, phase: str, seconds: float, stop: threading.Event | None = None) -> None:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end and not (stop is not None and stop.is_set()):
            path = HONEST_PAGES[i % len(HONEST_PAGES)]
            i += 1
            started = time.monotonic()
            try:
                response = self.client.get(path)
                status, location = response.status, response.headers.get("Location", "")
            except OSError:
                status, location = 0, ""
            self.answers.append((phase, status, time.monotonic() - started, location))
            time.sleep(HONEST_PAUSE)

    def summary(self, phase: str) -> dict[str, float | None]:
        rows = [a for a in self.answers if a[0] == phase]
        good = [a for a in rows if a[1] == 200]
        figures = latency_summary([a[2] for a in good])
        figures["success"] = round(len(good) / len(rows), 4) if rows else None
        return figures

    def harmed(self) -> list[str]:
        """Answers an honest user must never get."""
        bad = []
        for phase, status, _s, location in self.answers:
            if status in (401, 403, 429) or (status in (301, 302) and "/accounts/" in location):
                bad.append(f"{phase}: HTTP {status} {location}".strip())
        return bad


def _flood(
    ctx: Context,
    seconds: tuple[float, float],
    addresses: int,
    job: Callable[[AttackClient, int], str],
) -> tuple[Counter[str], float]:
    """Run ``job`` over WORKERS threads on ``addresses`` attacker addresses for at least
    ``seconds[0]`` and until every address has been throttled (or ``seconds[1]`` have passed:
    how fast a flood gets anywhere depends on the machine, not on the server's limits).
    Returns what the attackers were answered and how long the flood lasted."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    started = time.monotonic()
    least, most = started + seconds[0], started + seconds[1]
    clients = [ctx.client(n) for n in range(addresses)]
    throttled: set[int] = set()

    def going() -> bool:
        now = time.monotonic()
        if now >= most or not ctx.within_bounds(reserve=WORKERS + 2):
            return False
        return now < least or len(throttled) < addresses

    def worker(k: int) -> None:
        client = clients[k % addresses]
        i = 0
        while going():
            try:
                outcome = job(client, k * 100_000 + i)
            except BoundReached:
                break
            except OSError:
                outcome = "no answer"
            i += 1
            with lock:
                counts[outcome] += 1
                if "429" in outcome:
                    throttled.add(k % addresses)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(worker, range(WORKERS)))
    return counts, time.monotonic() - started


def _login_job(ctx: Context) -> Callable[[AttackClient, int], str]:
    def job(client: AttackClient, i: int) -> str:
        if i % 4 != 3:  # challenges are cheap to ask for; packets cost the server a hash
            try:
                client.challenge()
                return "challenge given"
            except RuntimeError:
                return "challenge 429"
        name = ATTACKED if i % 7 == 0 else f"nurse.flood{i % 997}"
        try:
            client.login(name, f"wrong-{i}")
            return "login accepted"
        except LoginFailed as exc:
            return "login 429" if exc.retry_after else "login failed"
        except RuntimeError:
            return "challenge 429"

    return job


def _request_job(ctx: Context, patient: AttackClient | None) -> Callable[[AttackClient, int], str]:
    def job(client: AttackClient, i: int) -> str:
        if patient is not None and i % 4 == 0:
            response = patient.get("/clinic/me/")
            if response.status in (301, 302) and "/accounts/" in response.headers.get(
                "Location", ""
            ):
                return "patient session cut"
            return f"patient page {response.status}"
        if i % 2 == 0:
            response = client.get("/accounts/login/challenge/")
            return f"challenge {response.status}"
        response = client.get("/accounts/login/")
        return f"login page {response.status}"

    return job


def _run(ctx: Context, kind: str) -> Outcome:
    # (least, most): the flood goes on past ``least`` until every address has met its limit, so
    # a slow, busy machine (a login costs a password hash) still reaches the limits; ``most``
    # stays inside the scenario's bound of 100 s.
    flood_seconds = (6.0, 60.0) if ctx.quick else (20.0, 80.0)
    baseline_seconds = 3.0 if ctx.quick else 8.0
    ctx.accounts.add(ATTACKED)
    probe = HonestProbe(ctx)
    probe.read_for("before", baseline_seconds)

    patient: AttackClient | None = None
    if kind == "request":
        patient = ctx.client(ADDRESSES[kind])
        try:
            patient.login(ATTACKED, ctx.password(ATTACKED))
        except (LoginFailed, RuntimeError):
            patient = None
    job = _login_job(ctx) if kind == "login" else _request_job(ctx, patient)

    stop = threading.Event()
    reader = threading.Thread(target=probe.read_for, args=("during", flood_seconds[1] + 1, stop))
    reader.start()
    honest_login = "not tried"
    counts: Counter[str] = Counter()
    lasted = 0.0
    try:
        if kind == "login":
            second = ctx.honest_client(2)
            box: dict[str, str] = {}

            def late_login() -> None:
                time.sleep(flood_seconds[0] / 2)
                try:
                    where = second.login(HONEST, ctx.password(HONEST))
                    box["result"] = "second factor asked" if "/security/" in where else "ok"
                except (LoginFailed, RuntimeError) as exc:
                    box["result"] = f"refused: {exc}"

            late = threading.Thread(target=late_login)
            late.start()
            counts, lasted = _flood(ctx, flood_seconds, ADDRESSES[kind], job)
            late.join()
            honest_login = box.get("result", "no answer")
        else:
            counts, lasted = _flood(ctx, flood_seconds, ADDRESSES[kind], job)
    finally:
        stop.set()
        reader.join()

    before, during = probe.summary("before"), probe.summary("during")
    harmed = probe.harmed()
    throttled = sum(n for what, n in counts.items() if "429" in what or "cut" in what)
    served_flood = sum(counts.values()) - throttled
    ratio = (
        round(during["p95_ms"] / before["p95_ms"], 2)
        if during["p95_ms"] and before["p95_ms"]
        else None
    )
    findings = [
        f"honest doctor: {before['success']:.0%} served before, "
        f"{(during['success'] or 0):.0%} during the flood; p95 {before['p95_ms']} ms -> "
        f"{during['p95_ms']} ms",
        f"flood: {sum(counts.values())} attempts in {lasted:.1f} s, {throttled} throttled "
        "(429 or session ended)",
    ]
    if kind == "login":
        findings.append(f"the honest login during the flood: {honest_login}")
    if kind == "request":
        anonymous = sum(n for what, n in counts.items() if what == "login page 200")
        if anonymous:
            findings.append(
                f"{anonymous} anonymous page requests were all served: no per-address rate "
                "limit on pages (left to the reverse proxy)"
            )
    if counts.get("login accepted"):
        findings.append("a flood login was accepted")
    findings += [f"honest user answered {h}" for h in harmed[:5]]
    held = (
        not harmed
        and (during["success"] or 0) >= 0.99
        and (before["success"] or 0) >= 0.99
        and throttled > 0
        and not counts.get("login accepted")
        and honest_login in ("ok", "not tried")
    )
    defences = []
    if any("429" in what for what in counts):
        defences.append("rate limit" if kind == "request" else "throttle")
    if any("cut" in what for what in counts):
        defences.append("session check")
    return Outcome(
        held=held,
        defences=defences,
        findings=findings,
        metrics={
            "honest_before": before,
            "honest_during": during,
            "p95_ratio_during_before": ratio,
            "flood": dict(counts),
            "flood_served": served_flood,
            "flood_throttled": throttled,
            "flood_seconds": round(lasted, 1),
            "honest_login_during_flood": honest_login,
        },
    )


SCENARIOS = [
    Scenario(
        name="load.login-flood",
        category="load",
        attacks="a flood of login challenges and wrong-password packets from two addresses",
        held_means=(
            "the honest doctor keeps being served (>= 99%, never throttled or stepped up) and "
            "can log in, while the flood meets 429s"
        ),
        bounds=Bounds(requests=8000, seconds=100),
        quick_bounds=Bounds(requests=2500, seconds=75),
        run=lambda ctx: _run(ctx, "login"),
        expect_detection=True,
    ),
    Scenario(
        name="load.request-flood",
        category="load",
        attacks="a flood of page requests from four addresses, one of them a signed-in patient",
        held_means=(
            "the honest doctor keeps being served (>= 99%, never throttled or stepped up) while "
            "the flood meets 429s or has its session ended"
        ),
        bounds=Bounds(requests=8000, seconds=100),
        quick_bounds=Bounds(requests=2500, seconds=75),
        run=lambda ctx: _run(ctx, "request"),
        expect_detection=True,
    ),
]
