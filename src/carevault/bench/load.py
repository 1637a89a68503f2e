"""``carevault bench load``: a disposable CareVault with the demo cast, driven over loopback by
Locust (in a subprocess: Locust patches the standard library with gevent, which must never
happen in a CareVault process), per configuration: SQLite or PostgreSQL + Redis, 1 or 2 app
processes, the security layer on or off.

Each configuration is two runs against one prepared data directory (``demo --prepare`` once per
backend, through the attack lab's :class:`~carevault.attacklab.lab.LabServer`):

* **the clinic mix** (bench/locustfile.py): the seven demo accounts, one Locust user each, paced
  like staff (seconds between actions), each on a workstation address of its own: per page
  requests/s, p50/p95/p99 and errors, and what the security layer made of it, read with
  ``carevault security activity --since T --json`` (goal: no event at step-up or above, no
  incident);
* **capacity probes** with no think time: the login page alone, then the doctors' record pages
  alone. A doctor reading records as fast as a machine can is a record sweep, and the security
  layer rightly ends those sessions; so the probes run with every event still recorded, scored
  and checked by the rules, but with the response thresholds at the top of their range
  (``CAREVAULT_SECURITY_THRESHOLDS``), so that the cost of the layer is measured without it
  cutting the probe. The probes' throughputs give the ratios: record / login page, security on /
  off, 2 processes / 1.

Locust shares the machine's cores with the server: its own CPU use is reported beside each run,
so a missed scale-out goal on a small machine can be read for what it is.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
# The probes: every event scored and checked, no response taken (see the module's docstring).
DISARMED = "0.997,0.998,0.999,1.0"
PROBE_USERS = 4

GOALS = {
    "record_vs_login_min": 0.25,
    "security_on_vs_off_min": 0.9,
    "two_vs_one_min": 1.7,
}

# Names Locust reports (bench/locustfile.py), repeated here: this process never imports Locust.
LOGIN_PAGE = "login page"
RECORD = "record page"
MIX_CLASSES = ("Doctor", "LabTechnician", "Officer", "Patient")
MIX_USERS = 7  # the demo cast: 2 doctors, 1 lab technician, 1 officer, 3 patients
PROBE_CLASSES = {LOGIN_PAGE: "LoginPageProbe", RECORD: "RecordPageProbe"}


class LoadError(Exception):
    """The benchmark could not run (one line for the user)."""


@dataclass(frozen=True)
class Config:
    backend: str  # "sqlite" or "postgresql"
    workers: int
    security: bool

    @property
    def name(self) -> str:
        return f"{self.backend}, {self.workers} proc, security {'on' if self.security else 'off'}"


@dataclass(frozen=True)
class Durations:
    mix: int  # seconds
    probe: int
    pace: tuple[float, float]


QUICK = Durations(mix=15, probe=10, pace=(1.0, 2.0))
FULL = Durations(mix=60, probe=20, pace=(1.0, 3.0))


def matrix(*, quick: bool, backends: list[str]) -> list[Config]:
    """Every configuration to run: the full matrix, or for ``quick`` the three that give each
    ratio once (on the first backend)."""
    if quick:
        first = backends[0]
        return [Config(first, 1, True), Config(first, 1, False), Config(first, 2, True)]
    return [
        Config(backend, workers, security)
        for backend in backends
        for workers in (1, 2)
        for security in (True, False)
    ]


# -- Locust's results ------------------------------------------------------------------------------


def parse_stats(prefix: Path) -> dict[str, dict[str, float]]:
    """Locust's ``PREFIX_stats.csv`` as ``{page: {requests, failures, rps, p50, p95, p99}}``
    (milliseconds; the ``Aggregated`` row under that name)."""
    path = Path(f"{prefix}_stats.csv")
    if not path.exists():
        raise LoadError(f"Locust wrote no statistics ({path.name} is missing)")
    pages: dict[str, dict[str, float]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            requests = int(row["Request Count"])
            pages[row["Name"]] = {
                "requests": requests,
                "failures": int(row["Failure Count"]),
                "rps": round(float(row["Requests/s"]), 2),
                "p50": _ms(row["50%"]) if requests else 0.0,
                "p95": _ms(row["95%"]) if requests else 0.0,
                "p99": _ms(row["99%"]) if requests else 0.0,
            }
    return pages


def parse_history(prefix: Path) -> dict[str, float]:
    """Each page's steady throughput from Locust's per-second ``PREFIX_stats_history.csv``
    (``--csv-full-history``): requests between the first second the page was served and the
    last, over that span. Unlike the whole run's average it leaves out the ramp-up (logins,
    finding patients), which on a busy machine can take most of a short probe."""
    path = Path(f"{prefix}_stats_history.csv")
    if not path.exists():
        return {}
    seen: dict[str, list[tuple[float, int]]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            count = int(row["Total Request Count"] or 0)
            if count:
                seen.setdefault(row["Name"], []).append((float(row["Timestamp"]), count))
    steady = {}
    for name, points in seen.items():
        (t0, c0), (t1, c1) = points[0], points[-1]
        if t1 > t0:
            steady[name] = round((c1 - c0) / (t1 - t0), 2)
    return steady


def _ms(text: str) -> float:
    return float(text) if text not in ("", "N/A") else 0.0


def parse_failures(prefix: Path) -> list[dict[str, Any]]:
    """Locust's ``PREFIX_failures.csv``: what failed, where, how often (no patient data: the
    locustfile's messages are status codes and locations)."""
    path = Path(f"{prefix}_failures.csv")
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [
            {"page": row["Name"], "error": row["Error"], "count": int(row["Occurrences"])}
            for row in csv.DictReader(handle)
        ]


def _cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine (/proc/stat), to say how loaded it was."""
    with open("/proc/stat") as handle:
        fields = [float(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def run_locust(
    host: str,
    classes: list[str],
    *,
    users: int,
    seconds: int,
    config_file: Path,
    prefix: Path,
) -> dict[str, Any]:
    """One headless Locust run in a subprocess; its statistics, failures and CPU use."""
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{seconds}s",
        "--stop-timeout",
        "5",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--csv-full-history",
        "--loglevel",
        "WARNING",
        *classes,
    ]
    env = {**os.environ, "CAREVAULT_LOAD_CONFIG": str(config_file)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, total0 = _cpu_busy()
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our own interpreter, Locust, our locustfile
        command, env=env, capture_output=True, text=True, timeout=seconds + 120, check=False
    )
    wall = time.monotonic() - started
    busy1, total1 = _cpu_busy()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Locust exits 1 when a request failed: that is a result, not a crash; no CSV is one.
    if done.returncode not in (0, 1) or not Path(f"{prefix}_stats.csv").exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LoadError(f"locust failed ({done.returncode}): {tail[0]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    pages = parse_stats(prefix)
    for name, rps in parse_history(prefix).items():
        if name in pages:
            pages[name]["steady_rps"] = rps
    return {
        "pages": pages,
        "failures": parse_failures(prefix),
        "seconds": round(wall, 1),
        "locust_cpu_cores": round(cpu / wall, 2),
        "machine_busy": round((busy1 - busy0) / max(total1 - total0, 1.0), 2),
    }


# -- the servers -----------------------------------------------------------------------------------


def reachable(postgres: str, redis_url: str) -> str | None:
    """None when both servers answer, else why not (one line)."""
    try:
        import psycopg

        with psycopg.connect(postgres, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {_safe(postgres)} unreachable ({type(exc).__name__})"
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis at {_safe(redis_url)} unreachable ({type(exc).__name__})"
    return None


def _safe(url: str) -> str:
    """The URL without a password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return parts._replace(netloc=f"{user}{host}{port}").geturl()


@contextlib.contextmanager
def _scratch_database(base: str) -> Iterator[str]:
    """A database of the benchmark's own on ``base``'s server, dropped afterwards."""
    import psycopg

    name = f"cv_bench_load_{uuid.uuid4().hex[:10]}"
    admin = urlsplit(base)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(base)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Backend:
    """A prepared data directory (and database) for one backend's configurations."""

    name: str
    data_dir: Path
    env: dict[str, str]
    password: str = ""


class Server(Protocol):
    """What the benchmark needs of a disposable server: the attack lab's
    :class:`~carevault.attacklab.lab.LabServer`, handed in by the command line (the benchmarks
    and the lab are sibling layers that never import each other)."""

    files: Any
    password: str

    @property
    def url(self) -> str: ...

    def prepare(self) -> None: ...

    def start(self, *, timeout: float = ...) -> None: ...

    def stop(self) -> None: ...


class Lab(Protocol):
    def __call__(self, data_dir: Path | None = ..., *, workers: int = ...) -> Server: ...


def _server(lab: Lab, backend: Backend, config: Config, *, disarmed: bool) -> Server:
    server = lab(backend.data_dir, workers=config.workers)
    # The lab server is a one-machine clinic; this one is told its backend and switches.
    server.files.env.update(backend.env)
    server.files.env["CAREVAULT_SECURITY_EVENTS"] = "1" if config.security else "0"
    if disarmed:
        server.files.env["CAREVAULT_SECURITY_THRESHOLDS"] = DISARMED
    else:
        server.files.env.pop("CAREVAULT_SECURITY_THRESHOLDS", None)
    server.password = backend.password
    return server


def _prepare(lab: Lab, backend: Backend) -> None:
    server = lab(backend.data_dir)
    server.files.env.update(backend.env)
    server.prepare()
    backend.password = server.password


def _activity(server: Server, since: float) -> dict[str, Any]:
    """What the security layer made of the mix: events scored, flagged (step-up or above),
    incidents and the responses taken."""
    when = dt.datetime.fromtimestamp(since - 1, tz=dt.UTC).isoformat()
    facts = server.files.cli_json("security", "activity", "--since", when)
    events = facts.get("events", [])
    flagged = [e for e in events if int(e.get("level") or 0) > 0]
    incidents = facts.get("incidents", [])
    return {
        "events": len(events),
        "flagged": len(flagged),
        "incidents": len(incidents),
        "responses": sum(len(i.get("responses", [])) for i in incidents),
        "rules": sorted({r for i in incidents for r in i.get("rules", [])}),
    }


def _feature_rows() -> list[list[float]]:
    """Real patients' measurements (the held-out split of the diagnosis data set) for the
    diagnosis form: plausible inputs, as a doctor would enter."""
    from carevault.modelguard import dataset

    split = dataset.load_split()
    return [[round(float(v), 5) for v in row] for row in split.X_test[:40]]


def _run_mix(
    lab: Lab, backend: Backend, config: Config, durations: Durations, work: Path, *, number: int
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": config.name,
        "backend": config.backend,
        "workers": config.workers,
        "security": config.security,
    }
    server = _server(lab, backend, config, disarmed=False)
    server.start()
    try:
        since = time.time()
        out["mix"] = run_locust(
            server.url,
            list(MIX_CLASSES),
            users=MIX_USERS,
            seconds=durations.mix,
            config_file=work / f"locust-{config.backend}.json",
            prefix=work / f"c{number}-mix",
        )
        out["security_activity"] = _activity(server, since) if config.security else None
    finally:
        server.stop()
    return out


def _run_probes(
    lab: Lab, backend: Backend, config: Config, durations: Durations, work: Path, *, number: int
) -> dict[str, Any]:
    server = _server(lab, backend, config, disarmed=True)
    server.start()
    try:
        return {
            page: run_locust(
                server.url,
                [cls],
                users=PROBE_USERS,
                seconds=durations.probe,
                config_file=work / f"locust-{config.backend}.json",
                prefix=work / f"c{number}-probe-{cls}",
            )
            for page, cls in PROBE_CLASSES.items()
        }
    finally:
        server.stop()


def run(
    lab: Lab,
    *,
    quick: bool = False,
    postgres: str | None = DEFAULT_POSTGRES,
    redis_url: str = DEFAULT_REDIS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the matrix (``postgres=None``: SQLite only). ``progress`` gets a line per step."""
    began = time.monotonic()

    def say(line: str) -> None:
        if progress is not None:
            progress(f"[{time.monotonic() - began:4.0f} s] {line}")

    durations = QUICK if quick else FULL
    skipped: list[str] = []
    backends = ["sqlite"]
    if postgres:
        why = reachable(postgres, redis_url)
        if why is None:
            backends.append("postgresql")
        else:
            skipped.append(f"PostgreSQL + Redis skipped: {why}")
            say(skipped[-1])
    if quick:
        backends = backends[:1]
        if postgres and not skipped:
            skipped.append("PostgreSQL + Redis not run in --quick (the full run has them)")
    configs = matrix(quick=quick, backends=backends)
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="carevault-bench-load-"))
    try:
        with contextlib.ExitStack() as stack:
            prepared: dict[str, Backend] = {}
            rows_of = {}
            features = _feature_rows()
            for name in backends:
                env = {"CAREVAULT_CACHE_PREFIX": f"bench-load-{uuid.uuid4().hex[:8]}"}
                if name == "postgresql":
                    assert postgres is not None
                    env["DATABASE_URL"] = stack.enter_context(_scratch_database(postgres))
                    env["REDIS_URL"] = redis_url
                backend = Backend(name, work / f"data-{name}", env)
                say(f"preparing the {name} demo (demo --prepare)")
                _prepare(lab, backend)
                prepared[name] = backend
                locust_config = {
                    "password": backend.password,
                    "pace": list(durations.pace),
                    "feature_rows": features,
                }
                (work / f"locust-{name}.json").write_text(json.dumps(locust_config))
            # Every mix before any probe: a probe reads records as fast as a machine can, and
            # the security layer's one-minute windows must not carry that into a mix.
            for number, config in enumerate(configs):
                say(f"clinic mix: {config.name}")
                row = _run_mix(
                    lab, prepared[config.backend], config, durations, work, number=number
                )
                rows.append(row)
                rows_of[config] = row
            for number, config in enumerate(configs):
                say(f"capacity probes: {config.name}")
                rows_of[config]["probes"] = _run_probes(
                    lab, prepared[config.backend], config, durations, work, number=number
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say("done")
    result: dict[str, Any] = {
        "benchmark": "load",
        "seconds": round(time.monotonic() - began, 1),
        "quick": quick,
        "durations": {
            "mix_s": durations.mix,
            "probe_s": durations.probe,
            "pace_s": list(durations.pace),
        },
        "mix_users": MIX_USERS,
        "probe_users": PROBE_USERS,
        "cores": os.cpu_count(),
        "configs": rows,
        "skipped": skipped,
    }
    result.update(evaluate(rows, cores=os.cpu_count() or 1))
    return result


# -- the goals -------------------------------------------------------------------------------------


def _probe_rps(row: dict[str, Any], page: str) -> float:
    """The probe's steady throughput of ``page`` (the whole run's average if there is none)."""
    stats = row["probes"][page]["pages"].get(page, {})
    return float(stats.get("steady_rps", stats.get("rps", 0.0)))


def evaluate(rows: list[dict[str, Any]], *, cores: int) -> dict[str, Any]:
    """The goals over the configurations run: ``goals`` {name: met}, ``goal_values`` {name:
    the worst measured value}, ``notes`` (why a goal may be out of reach here)."""
    values: dict[str, float] = {}
    goals: dict[str, bool | None] = {}
    notes: list[str] = []

    ratios = [
        _probe_rps(r, RECORD) / _probe_rps(r, LOGIN_PAGE) for r in rows if _probe_rps(r, LOGIN_PAGE)
    ]
    name = "record page >= 25% of login page throughput"
    goals[name] = min(ratios) >= GOALS["record_vs_login_min"] if ratios else None
    if ratios:
        values[name] = round(min(ratios), 3)

    def pair(key: str, a: Any, b: Any) -> dict[tuple[Any, ...], float]:
        found: dict[tuple[Any, ...], float] = {}
        index = {(r["backend"], r["workers"], r["security"]): r for r in rows}
        for (backend, workers, security), row in index.items():
            other = None
            if key == "security" and security:
                other = index.get((backend, workers, False))
            if key == "workers" and workers == 2:
                other = index.get((backend, 1, security))
            if other is not None and _probe_rps(other, RECORD):
                found[(backend, workers, security)] = _probe_rps(row, RECORD) / _probe_rps(
                    other, RECORD
                )
        return found

    on_off = pair("security", True, False)
    name = "security on >= 0.9x of off (record page)"
    goals[name] = min(on_off.values()) >= GOALS["security_on_vs_off_min"] if on_off else None
    if on_off:
        values[name] = round(min(on_off.values()), 3)

    scale = pair("workers", 2, 1)
    name = "2 processes >= 1.7x of 1 (record page)"
    goals[name] = min(scale.values()) >= GOALS["two_vs_one_min"] if scale else None
    if scale:
        values[name] = round(min(scale.values()), 3)
        if goals[name] is False and cores <= 2:
            locust = max(
                (p["locust_cpu_cores"] for r in rows for p in r["probes"].values()), default=0.0
            )
            notes.append(
                f"2 processes >= 1.7x of 1 is out of reach on this {cores}-core machine: Locust "
                f"itself used up to {locust:.2f} cores during the probes, the server's 2 "
                "processes share what is left"
            )

    errors = sum(
        page["failures"]
        for r in rows
        for run in [r["mix"], *r["probes"].values()]
        for page_name, page in run["pages"].items()
        if page_name != "Aggregated"
    )
    name = "0 errors"
    goals[name] = errors == 0
    values[name] = errors

    activity = [r["security_activity"] for r in rows if r.get("security_activity") is not None]
    raised = sum(a["flagged"] + a["incidents"] for a in activity)
    name = "0 security events from the legitimate mix"
    goals[name] = raised == 0 if activity else None
    values[name] = raised
    return {"goals": goals, "goal_values": values, "notes": notes}


def missed(result: dict[str, Any]) -> list[str]:
    """The goals measured and missed."""
    return [name for name, ok in result["goals"].items() if ok is False]


# -- for people ------------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("MET" if ok else "MISSED")


def render(result: dict[str, Any]) -> str:
    from carevault.platform.tables import format_table

    d = result["durations"]
    note = " (quick run: a reduced matrix, short runs)" if result["quick"] else ""
    out = [
        f"carevault bench load{note}: Locust over loopback, {result['cores']} cores shared "
        f"with the load generator; mix {result['mix_users']} users paced "
        f"{d['pace_s'][0]:g}-{d['pace_s'][1]:g} s for {d['mix_s']} s, probes "
        f"{result['probe_users']} users with no think time for {d['probe_s']} s each"
    ]
    out += result["skipped"]
    for row in result["configs"]:
        mix = row["mix"]
        out.append("")
        out.append(
            f"== {row['name']}: mix {mix['seconds']} s, Locust used {mix['locust_cpu_cores']} "
            f"cores, machine {mix['machine_busy']:.0%} busy =="
        )
        table = [
            [
                page,
                str(int(p["requests"])),
                f"{p['rps']:.2f}",
                f"{p['p50']:.0f}",
                f"{p['p95']:.0f}",
                f"{p['p99']:.0f}",
                str(int(p["failures"])),
            ]
            for page, p in sorted(mix["pages"].items(), key=lambda kv: kv[0] == "Aggregated")
        ]
        for page, probe in row["probes"].items():
            p = probe["pages"].get(page, {"requests": 0, "rps": 0, "p50": 0, "p95": 0, "p99": 0})
            table.append(
                [
                    f"PROBE {page} (Locust {probe['locust_cpu_cores']} cores)",
                    str(int(p["requests"])),
                    f"{p.get('steady_rps', p['rps']):.2f}",
                    f"{p['p50']:.0f}",
                    f"{p['p95']:.0f}",
                    f"{p['p99']:.0f}",
                    str(sum(int(q["failures"]) for q in probe["pages"].values())),
                ]
            )
        out.append(
            format_table(["page", "requests", "req/s", "p50 ms", "p95", "p99", "errors"], table)
        )
        activity = row.get("security_activity")
        if activity is not None:
            out.append(
                f"security layer on the mix: {activity['events']} events scored, "
                f"{activity['flagged']} at step-up or above, {activity['incidents']} incidents, "
                f"{activity['responses']} responses"
                + (f" (rules: {', '.join(activity['rules'])})" if activity["rules"] else "")
            )
        for failure in (
            mix["failures"] + [f for p in row["probes"].values() for f in p["failures"]]
        )[:5]:
            out.append(f"  error: {failure['page']}: {failure['error']} x{failure['count']}")
    out.append("")
    out.append(
        format_table(
            ["goal", "measured (worst)", "verdict"],
            [
                [name, str(result["goal_values"].get(name, "-")), _verdict(ok)]
                for name, ok in result["goals"].items()
            ],
        )
    )
    out += result["notes"]
    return "\n".join(out)
