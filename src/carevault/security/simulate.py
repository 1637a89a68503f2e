"""Traffic generator: realistic benign clinical behaviour with labelled attack episodes.

``generate(seed, days=..., users=...)`` returns :class:`~carevault.security.events.Event` records
sorted by time, the same type the web layer emits, so detectors trained here score real traffic
unchanged. ``simulate(...)`` returns the same events plus the attack episodes (class, time span,
positions of their events) for time-to-detect and attempts-before-detection measurements.

Benign population (drawn from the seed, so every seed has different users, networks, clients):

- doctors: weekday shifts at a personal start hour, sessions from the clinic NAT (shared
  addresses and managed workstation clients) or from one or two home networks, PHI reads at a
  personal rate (a few per minute, bursty, with idle gaps), writes, a few prediction-API calls an
  hour, now and then a mistyped password followed by success, rarely a denial; some evenings a
  short session from home;
- patients: a few evenings a month, from home broadband or a mobile carrier (whose CGNAT hands
  out a new address per session and sometimes mid-session), a few reads of their own record,
  sometimes an old link to something they may not see (a denial), more typos than staff;
- lab technicians: shifts with uploads (PDF / images / DICOM, declared type = sniffed type, sane
  sizes; encrypted uploads carry a valid header with a suite id in {1, 2, 3, 16, 17, 32} and the
  matching key length), reads and result writes;
- administrators: short sessions and now and then a key operation;
- the host: one sample a minute whose CPU, network throughput and p95 latency follow the request
  volume (a daily pattern) plus a nightly backup.

Round-trip times come from the network (clinic LAN ~3 ms, broadband 15-60 ms, mobile 40-120 ms,
proxies and hosting further) times a per-user factor, with per-request jitter.

Attack episodes (every :class:`AttackClass` but ``BENIGN``) are inserted at random times after a
warm-up (the first tenth of the period, at most a day, is attack-free so per-user habits exist),
each with its own addresses, networks and clients, every event labelled with its class. Benign
events never depend on which attacks are injected: the benign part of ``generate(s, attacks=[])``
equals that of ``generate(s)``.
"""

# ruff: noqa: S311 - simulated traffic needs reproducible randomness, not secrets

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import Literal

import numpy as np

from carevault.crypto.suites import Suite

from .events import AttackClass, Event, EventKind

__all__ = [
    "ATTACK_CLASSES",
    "DEFAULT_START",
    "Episode",
    "Traffic",
    "generate",
    "simulate",
]

DEFAULT_START = 1_736_121_600.0  # Monday 2025-01-06 00:00 UTC (simulated clinic time is UTC)
ATTACK_CLASSES: tuple[AttackClass, ...] = tuple(
    a for a in AttackClass if a is not AttackClass.BENIGN
)

_DAY = 86_400.0
_HOUR = 3_600.0
_MIN = 60.0

# Suite ids a genuine ciphertext header may carry, and the AES key length each implies.
_SUITE_KEYS: dict[int, int] = {s.suite_id: s.aes_key_bytes for s in Suite}
_SUITE_IDS: tuple[int, ...] = tuple(sorted(_SUITE_KEYS))

# Benign upload types: (content type, median size in bytes, weight).
_UPLOAD_TYPES: tuple[tuple[str, float, float], ...] = (
    ("application/pdf", 250e3, 0.55),
    ("image/png", 1.5e6, 0.15),
    ("image/jpeg", 2e6, 0.15),
    ("image/tiff", 8e6, 0.05),
    ("application/dicom", 30e6, 0.10),
)
_BAD_SNIFFED = ("application/x-dosexec", "text/html", "application/zip", "text/x-shellscript", "")
_BAD_KEY_BYTES = (1, 5, 7, 8, 15, 31, 33, 48, 64, 100, 4096)
_BAD_SUITES = (4, 5, 15, 18, 31, 33, 99, 255, 4660, 65535)
_GUESSED_NAMES = (
    "admin", "administrator", "root", "test", "reception", "nurse1", "info", "support",
    "doctor", "lab", "backup", "guest", "it", "billing", "pharmacy",
)  # fmt: skip
# Benign habits the recorded clinic day showed (carevault.security.clinic_day): staff on the
# night shift, sign-in mistakes of every kind, patients sharing a carrier's NAT address.
_NIGHT_SHIFT = 0.12
_FIRST_TYPO = 0.35  # the first sign-in of an account in the period starts with a mistake
_NAME_TYPO = 0.2  # a failed sign-in names a mistyped username (no account)
_EMAIL_AS_NAME = 0.15  # ... or the person's e-mail address
_TYPO_BURST = 0.06  # a burst of three or four wrong passwords before the right one
_SHARED_CGNAT = 0.5  # a phone session on one of the carrier's few shared NAT addresses
_NAT_REFUSED = 0.5  # a moved phone's session is refused (bound to its address); sign in again
_ROUNDS_LIST = 0.5  # a doctor's session opens with their patient list (20-50 records)
_LAB_BATCH = 0.4  # a lab session opens with a batch of results (8-15 uploads)
_FIRST = ("anna", "ben", "carla", "dan", "eva", "finn", "gina", "hugo", "ida", "jon", "kim", "lea")
_LAST = ("smith", "jones", "meyer", "garcia", "rossi", "novak", "berg", "silva", "khan", "ito")


@dataclass(frozen=True, slots=True)
class Episode:
    """One attack episode: its class, time span and where its events sit in ``Traffic.events``."""

    attack: AttackClass
    start: float
    end: float
    indices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Traffic:
    events: list[Event]
    episodes: tuple[Episode, ...]


@dataclass(slots=True)
class _Net:
    a: int
    b: int
    rtt: float  # typical round-trip time (ms)
    jitter: float  # sigma of the log-normal per-request jitter
    prefix: str = ""


@dataclass(slots=True)
class _Place:
    """Where a user connects from: a network, the addresses they get there, their clients."""

    net: _Net
    addresses: list[str]
    clients: list[str]
    weight: float
    fresh_address: float = 0.0  # chance a session gets a new address (CGNAT, dynamic IP)


@dataclass(slots=True)
class _User:
    name: str
    role: str
    rtt_factor: float
    places: list[_Place]
    start_hour: float = 8.0
    shift_hours: float = 8.0
    rate: float = 1.0  # requests per minute while active
    login_prob: float = 0.9  # chance of working / logging in on a given day
    weekend_prob: float = 0.1
    evening_prob: float = 0.1
    typo_prob: float = 0.03
    pred_share: float = 0.02
    list_share: float = 0.15  # share of reads that are list views (several records)
    patient_id: str = ""
    panel: list[str] = field(default_factory=list)
    suites: tuple[int, ...] = ()
    encrypt_share: float = 0.0
    signed_in: bool = False  # has signed in before (the system knows their devices)


@dataclass(slots=True)
class _Session:
    user: _User
    session: str
    start: float
    end: float


Attacks = Iterable[AttackClass] | Literal["all"]


def generate(
    seed: int,
    *,
    days: float = 7.0,
    users: int = 60,
    attacks: Attacks = "all",
    attack_rate: float | Mapping[AttackClass, float] = 1.0,
    start: float = DEFAULT_START,
) -> list[Event]:
    """Generated events sorted by time (see :func:`simulate`)."""
    return simulate(
        seed, days=days, users=users, attacks=attacks, attack_rate=attack_rate, start=start
    ).events


def simulate(
    seed: int,
    *,
    days: float = 7.0,
    users: int = 60,
    attacks: Attacks = "all",
    attack_rate: float | Mapping[AttackClass, float] = 1.0,
    start: float = DEFAULT_START,
) -> Traffic:
    """Generate ``days`` of traffic for ``users`` accounts, deterministic per ``seed``.

    ``attacks``: the attack classes to inject (``"all"``: every class). ``attack_rate``: expected
    episodes per class per simulated day (a number, or one per class); every requested class gets
    at least one episode. About 150 benign events per user-day (doctors dominate) plus
    1,440 host samples a day; 1 M events is roughly ``users=200, days=30``.
    """
    if days <= 0:
        raise ValueError("days must be positive")
    if users < 1:
        raise ValueError("users must be at least 1")
    wanted = list(ATTACK_CLASSES) if attacks == "all" else list(dict.fromkeys(attacks))
    wanted = [a for a in wanted if a is not AttackClass.BENIGN]
    world = _World(seed, start, days, users)
    benign = world.benign()
    cpu, net, lat = world.host_baseline(benign)
    host_labels: list[AttackClass] = [AttackClass.BENIGN] * len(cpu)
    episodes: list[tuple[AttackClass, list[Event], list[int]]] = []
    for attack in wanted:
        rate = attack_rate.get(attack, 0.0) if isinstance(attack_rate, Mapping) else attack_rate
        rng = random.Random(f"{seed}/attack/{attack.value}")
        count = max(1, _poisson(rng, rate * world.attack_days))
        for _ in range(count):
            evs, minutes = world.attack(attack, rng, cpu, net, lat)
            for m in minutes:
                host_labels[m] = attack
            episodes.append((attack, evs, minutes))
    host = world.host_events(cpu, net, lat, host_labels)
    events = benign + host
    for _, evs, _ in episodes:
        events.extend(evs)
    events.sort(key=attrgetter("at"))
    return Traffic(events, _locate(events, episodes, host))


def _locate(
    events: list[Event],
    episodes: list[tuple[AttackClass, list[Event], list[int]]],
    host: list[Event],
) -> tuple[Episode, ...]:
    owner: dict[int, int] = {}
    for number, (_, evs, minutes) in enumerate(episodes):
        for e in evs:
            owner[id(e)] = number
        for m in minutes:
            owner[id(host[m])] = number
    found: list[list[int]] = [[] for _ in episodes]
    for i, e in enumerate(events):
        if e.label is not AttackClass.BENIGN:
            owned = owner.get(id(e))
            if owned is not None:
                found[owned].append(i)
    out = []
    for (attack, _, _), idx in zip(episodes, found, strict=True):
        if idx:
            out.append(Episode(attack, events[idx[0]].at, events[idx[-1]].at, tuple(idx)))
    return tuple(out)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class _World:
    def __init__(self, seed: int, start: float, days: float, users: int) -> None:
        self.seed = seed
        self.start = start
        self.end = start + days * _DAY
        self.days = days
        warmup = min(_DAY, 0.1 * days * _DAY)
        self.attack_start = start + warmup
        self.attack_days = (self.end - self.attack_start) / _DAY
        self.rng = random.Random(f"{seed}/world")
        self.used_nets: set[tuple[int, int]] = set()
        self.sessions: list[_Session] = []
        rng = self.rng
        self.browsers = [self._fingerprint() for _ in range(12)]
        self.phones = [self._fingerprint() for _ in range(8)]
        self.tools = [self._fingerprint() for _ in range(6)]  # scripted clients (curl, hydra...)
        self.clinic_clients = rng.sample(self.browsers, 2)
        self.clinic = self._net(rtt=rng.uniform(2.0, 5.0), jitter=0.15)
        self.clinic_addresses = [self._address(self.clinic) for _ in range(rng.randint(2, 4))]
        self.isps = [self._net(rng.uniform(12.0, 45.0), 0.2) for _ in range(rng.randint(8, 16))]
        self.carriers = [self._net(rng.uniform(40.0, 90.0), 0.35) for _ in range(4)]
        self.cgnat = {
            (c.a, c.b): [self._address(c) for _ in range(rng.randint(2, 4))] for c in self.carriers
        }
        n_patients = max(400, users * 25)
        self.patient_ids = [f"pt-{rng.getrandbits(40):010x}" for _ in range(n_patients)]
        self.users = self._cast(users)
        self.real_names = [u.name for u in self.users]

    # -- identities ---------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def _net(self, rtt: float, jitter: float) -> _Net:
        rng = self.rng
        while True:
            a, b = rng.randint(11, 223), rng.randint(0, 255)
            if a not in (100, 127, 169, 172, 192, 198, 203) and (a, b) not in self.used_nets:
                self.used_nets.add((a, b))
                return _Net(a, b, rtt, jitter, f"{a}.{b}.0.0/16")

    def _address(self, net: _Net, rng: random.Random | None = None) -> str:
        r = rng or self.rng
        return f"{net.a}.{net.b}.{r.randint(0, 255)}.{r.randint(1, 254)}"

    def _cast(self, n: int) -> list[_User]:
        rng = self.rng
        roles = ["doctor", "patient", "labtech", "admin"][: min(n, 4)]
        for _ in range(n - len(roles)):
            r = rng.random()
            roles.append("doctor" if r < 0.36 else "patient" if r < 0.88 else "labtech")
        prefix = {"doctor": "dr", "patient": "pt", "labtech": "lab", "admin": "adm"}
        out = []
        for role in roles:
            name = f"{prefix[role]}.{rng.choice(_LAST)}{rng.getrandbits(16):04x}"
            out.append(self._user(name, role))
        return out

    def _home(self, weight: float, clients: list[str]) -> _Place:
        rng = self.rng
        isp = rng.choice(self.isps)
        addrs = [self._address(isp) for _ in range(rng.randint(1, 2))]
        return _Place(isp, addrs, clients, weight, fresh_address=0.02)

    def _user(self, name: str, role: str) -> _User:
        rng = self.rng
        u = _User(name, role, rtt_factor=rng.lognormvariate(0.0, 0.25), places=[])
        laptop = [rng.choice(self.browsers)]
        if rng.random() < 0.3:
            laptop.append(rng.choice(self.browsers))
        if role in ("doctor", "labtech", "admin"):
            at_work = 0.85 if role == "doctor" else 0.97
            u.places.append(
                _Place(self.clinic, self.clinic_addresses, self.clinic_clients, at_work)
            )
            u.places.append(self._home(0.15 if role == "doctor" else 0.03, laptop))
            if rng.random() < 0.3:
                u.places.append(self._home(0.05, laptop))
            u.start_hour = rng.uniform(6.5, 10.0)
            u.shift_hours = rng.uniform(7.0, 10.0)
            if role != "admin" and rng.random() < _NIGHT_SHIFT:
                # The night shift: in at 19-22:30, out after midnight.
                u.start_hour = rng.uniform(19.0, 22.5)
                u.shift_hours = rng.uniform(8.5, 11.0)
            u.login_prob = rng.uniform(0.85, 0.97)
            u.weekend_prob = rng.uniform(0.0, 0.25)
            u.typo_prob = rng.uniform(0.01, 0.05)
        if role == "doctor":
            u.rate = rng.lognormvariate(math.log(2.0), 0.4)
            u.evening_prob = rng.uniform(0.0, 0.3)
            u.pred_share = rng.uniform(0.005, 0.04)
            u.list_share = rng.uniform(0.05, 0.3)
            u.panel = rng.sample(self.patient_ids, min(len(self.patient_ids), rng.randint(40, 200)))
        elif role == "labtech":
            u.rate = rng.lognormvariate(math.log(0.6), 0.3)
            u.suites = tuple(rng.sample(_SUITE_IDS, rng.randint(1, 2)))
            u.encrypt_share = rng.uniform(0.4, 1.0)
            u.panel = rng.sample(self.patient_ids, min(len(self.patient_ids), 300))
            u.evening_prob = 0.0
        elif role == "admin":
            u.rate = 0.3
            u.evening_prob = 0.02
        else:  # patient
            u.patient_id = rng.choice(self.patient_ids)
            u.panel = [u.patient_id]
            phone = [rng.choice(self.phones)]
            carrier = rng.choice(self.carriers)
            u.places.append(_Place(carrier, [], phone, rng.uniform(0.3, 0.9), fresh_address=1.0))
            u.places.append(self._home(rng.uniform(0.2, 0.6), laptop))
            u.start_hour = min(23.0, max(7.0, rng.gauss(19.0, 2.0)))
            u.login_prob = rng.uniform(0.02, 0.25)
            u.weekend_prob = u.login_prob * 1.3
            u.rate = rng.uniform(0.8, 2.5)
            u.typo_prob = rng.uniform(0.03, 0.12)
        return u

    # -- benign traffic -----------------------------------------------------------------------

    def benign(self) -> list[Event]:
        out: list[Event] = []
        weekday0 = datetime.fromtimestamp(self.start, UTC).weekday()
        n_days = math.ceil(self.days)
        for i, u in enumerate(self.users):
            rng = random.Random(f"{self.seed}/user/{i}")
            for d in range(n_days):
                day = self.start + d * _DAY
                weekend = (weekday0 + d) % 7 >= 5
                if u.role == "patient":
                    self._patient_day(rng, u, day, weekend, out)
                else:
                    self._staff_day(rng, u, day, weekend, out)
        return [e for e in out if e.at < self.end]

    def _staff_day(
        self, rng: random.Random, u: _User, day: float, weekend: bool, out: list[Event]
    ) -> None:
        if rng.random() < (u.weekend_prob if weekend else u.login_prob):
            t = day + _HOUR * (u.start_hour + rng.gauss(0.0, 0.35))
            t_end = t + _HOUR * (u.shift_hours + rng.gauss(0.0, 0.5)) * (0.6 if weekend else 1.0)
            while t < t_end - 5 * _MIN:
                block = rng.uniform(40.0, 150.0) * _MIN
                place = u.places[0] if rng.random() < u.places[0].weight else rng.choice(u.places)
                self._session(rng, u, t, min(t + block, t_end), place, out)
                t += block + rng.uniform(5.0, 60.0) * _MIN
        if len(u.places) > 1 and rng.random() < u.evening_prob:
            t = day + _HOUR * rng.uniform(19.0, 22.5)
            self._session(rng, u, t, t + rng.uniform(10.0, 45.0) * _MIN, u.places[1], out)

    def _patient_day(
        self, rng: random.Random, u: _User, day: float, weekend: bool, out: list[Event]
    ) -> None:
        if rng.random() < (u.weekend_prob if weekend else u.login_prob):
            hour = min(23.8, max(6.0, u.start_hour + rng.gauss(0.0, 1.2)))
            t = day + _HOUR * hour
            place = _pick_place(rng, u.places)
            self._session(rng, u, t, t + rng.uniform(2.0, 15.0) * _MIN, place, out)

    def _session(
        self,
        rng: random.Random,
        u: _User,
        t0: float,
        t1: float,
        place: _Place,
        out: list[Event],
    ) -> None:
        net = place.net
        shared = self.cgnat.get((net.a, net.b)) if place.fresh_address >= 1.0 else None
        if shared and rng.random() < _SHARED_CGNAT:
            address = rng.choice(shared)
        elif not place.addresses or rng.random() < place.fresh_address:
            address = self._address(net, rng)
            if place.addresses and place.fresh_address < 1.0:
                place.addresses[rng.randrange(len(place.addresses))] = address
        else:
            address = rng.choice(place.addresses)
        client = place.clients[0] if rng.random() < 0.8 else rng.choice(place.clients)
        rtt0 = net.rtt * u.rtt_factor
        jit = net.jitter
        prefix, name, role = net.prefix, u.name, u.role
        lognorm, rand, expo = rng.lognormvariate, rng.random, rng.expovariate

        t = t0
        # A first sign-in (a new starter, the first day on the system) goes wrong more often,
        # from a device and a network the system has never seen for the account.
        typo_prob = u.typo_prob if u.signed_in else max(u.typo_prob, _FIRST_TYPO)
        u.signed_in = True
        if rand() < typo_prob:
            tries = 1 if rand() < 0.85 else rng.randint(2, 3)
            if rand() < _TYPO_BURST:
                tries = rng.randint(3, 4)
            for _ in range(tries):
                typed, typed_role = _mistyped(rng, name), ""
                if typed == name:
                    typed_role = role
                out.append(
                    Event(t, EventKind.LOGIN_FAILURE, typed, typed_role, address, prefix, client,
                          rtt_ms=rtt0 * lognorm(0.0, jit), outcome="failed")
                )  # fmt: skip
                t += rng.uniform(4.0, 25.0)
        sid = f"{rng.getrandbits(64):016x}"
        out.append(
            Event(t, EventKind.LOGIN_SUCCESS, name, role, address, prefix, client, sid,
                  rtt0 * lognorm(0.0, jit))
        )  # fmt: skip
        self.sessions.append(_Session(u, sid, t, t1))
        if rand() < 0.002:
            out.append(
                Event(t + 1.0, EventKind.PACKET_REJECTED, name, role, address, prefix, client,
                      rtt_ms=rtt0 * lognorm(0.0, jit), outcome="failed")
            )  # fmt: skip
        rate = u.rate / _MIN * rng.uniform(0.6, 1.4)
        panel = u.panel
        patient = rng.choice(panel) if panel else ""
        t += expo(rate)
        moved = place.fresh_address >= 1.0 and rand() < 0.08
        denied_left = 1 if role == "patient" and rand() < 0.04 else 0
        if role == "doctor" and panel and rand() < _ROUNDS_LIST:
            # The day's list: every patient of the doctor's round on one page.
            listed = tuple(rng.sample(panel, min(len(panel), rng.randint(20, 50))))
            out.append(
                Event(t, EventKind.PHI_READ, name, role, address, prefix, client, sid,
                      rtt0 * lognorm(0.0, jit), records=len(listed), patients=listed)
            )  # fmt: skip
            t += rng.uniform(20.0, 90.0)
        elif role == "labtech" and panel and rand() < _LAB_BATCH:
            t = self._lab_batch(rng, u, t, (address, prefix, client), sid, rtt0, jit, out)
        while t < t1:
            if moved and rand() < 0.1:  # the carrier's NAT moved the phone to another address
                address = self._address(net, rng)
                moved = False
                if rand() < _NAT_REFUSED:
                    # The session is bound to its address: refused, and the patient signs in again.
                    out.append(
                        Event(t, EventKind.ACCESS_DENIED, name, role, address, prefix, client,
                              sid, rtt0 * lognorm(0.0, jit), outcome="denied")
                    )  # fmt: skip
                    t += rng.uniform(10.0, 40.0)
                    sid = f"{rng.getrandbits(64):016x}"
                    out.append(
                        Event(t, EventKind.LOGIN_SUCCESS, name, role, address, prefix, client,
                              sid, rtt0 * lognorm(0.0, jit))
                    )  # fmt: skip
                    t += expo(rate)
            r = rand()
            rtt = rtt0 * lognorm(0.0, jit)
            if role == "doctor":
                if r < u.pred_share:
                    out.append(
                        Event(t, EventKind.PREDICTION, name, role, address, prefix, client, sid,
                              rtt, records=1)
                    )  # fmt: skip
                elif r < u.pred_share + 0.12:
                    out.append(
                        Event(t, EventKind.PHI_WRITE, name, role, address, prefix, client, sid,
                              rtt, records=1, patients=(patient,))
                    )  # fmt: skip
                elif r < u.pred_share + 0.124:  # a patient outside the care team
                    other = rng.choice(self.patient_ids)
                    out.append(
                        Event(t, EventKind.ACCESS_DENIED, name, role, address, prefix, client,
                              sid, rtt, outcome="denied", patients=(other,))
                    )  # fmt: skip
                else:
                    n = 1 if rand() > u.list_share else rng.randint(2, 12)
                    touched = (patient,) if n == 1 else tuple(rng.sample(panel, min(n, len(panel))))
                    out.append(
                        Event(t, EventKind.PHI_READ, name, role, address, prefix, client, sid,
                              rtt, records=len(touched), patients=touched)
                    )  # fmt: skip
                if rand() < 0.25:
                    patient = rng.choice(panel)
                gap = expo(rate) if rand() > 0.03 else rng.uniform(3.0, 20.0) * _MIN
            elif role == "labtech":
                if r < 0.3:
                    where = (address, prefix, client)
                    out.append(self._upload(rng, u, t, where, sid, rtt, patient))
                elif r < 0.55:
                    out.append(
                        Event(t, EventKind.PHI_WRITE, name, role, address, prefix, client, sid,
                              rtt, records=1, patients=(patient,))
                    )  # fmt: skip
                else:
                    out.append(
                        Event(t, EventKind.PHI_READ, name, role, address, prefix, client, sid,
                              rtt, records=1, patients=(patient,))
                    )  # fmt: skip
                if rand() < 0.4:
                    patient = rng.choice(panel)
                gap = expo(rate)
            elif role == "patient":
                if denied_left and rand() < 0.3:  # an old link to something no longer shared
                    denied_left = 0
                    other = rng.choice(self.patient_ids)
                    out.append(
                        Event(t, EventKind.ACCESS_DENIED, name, role, address, prefix, client,
                              sid, rtt, outcome="denied", patients=(other,))
                    )  # fmt: skip
                elif r < 0.12:
                    out.append(
                        Event(t, EventKind.PHI_WRITE, name, role, address, prefix, client, sid,
                              rtt, records=1, patients=(patient,))
                    )  # fmt: skip
                else:
                    out.append(
                        Event(t, EventKind.PHI_READ, name, role, address, prefix, client, sid,
                              rtt, records=1, patients=(patient,))
                    )  # fmt: skip
                gap = expo(rate)
            else:  # admin
                if r < 0.05:
                    out.append(
                        Event(t, EventKind.KEY_OPERATION, name, role, address, prefix, client,
                              sid, rtt)
                    )  # fmt: skip
                gap = expo(rate)
            t += gap

    def _lab_batch(
        self,
        rng: random.Random,
        u: _User,
        t: float,
        where: tuple[str, str, str],
        sid: str,
        rtt0: float,
        jit: float,
        out: list[Event],
    ) -> float:
        """A batch of results: the queue, then each request opened and its result uploaded."""
        address, prefix, client = where
        name, role = u.name, u.role
        out.append(
            Event(t, EventKind.PHI_READ, name, role, address, prefix, client, sid,
                  rtt0 * rng.lognormvariate(0.0, jit))
        )  # fmt: skip
        for _ in range(rng.randint(8, 15)):
            t += rng.uniform(60.0, 240.0)
            patient = rng.choice(u.panel)
            rtt = rtt0 * rng.lognormvariate(0.0, jit)
            out.append(
                Event(t, EventKind.PHI_READ, name, role, address, prefix, client, sid, rtt,
                      records=1, patients=(patient,))
            )  # fmt: skip
            t += rng.uniform(20.0, 90.0)
            out.append(self._upload(rng, u, t, where, sid, rtt, patient))
        return t + rng.uniform(30.0, 120.0)

    def _upload(
        self,
        rng: random.Random,
        u: _User,
        t: float,
        where: tuple[str, str, str],
        sid: str,
        rtt: float,
        patient: str,
    ) -> Event:
        r, acc = rng.random(), 0.0
        kind, median = _UPLOAD_TYPES[0][0], _UPLOAD_TYPES[0][1]
        for ctype, med, weight in _UPLOAD_TYPES:
            acc += weight
            if r < acc:
                kind, median = ctype, med
                break
        size = int(min(400e6, median * rng.lognormvariate(0.0, 0.7)))
        declared = kind if rng.random() > 0.01 else "application/octet-stream"
        suite = key = 0
        if rng.random() < u.encrypt_share:
            suite = rng.choice(u.suites)
            key = _SUITE_KEYS[suite]
        address, prefix, client = where
        return Event(
            t, EventKind.UPLOAD, u.name, u.role, address, prefix, client, sid,
            rtt, records=1, upload_bytes=size, declared_type=declared, sniffed_type=kind,
            suite_id=suite, key_bytes=key, patients=(patient,),
        )  # fmt: skip

    # -- the host -----------------------------------------------------------------------------

    def host_baseline(self, benign: list[Event]) -> tuple[list[float], list[float], list[float]]:
        """Per-minute CPU, throughput and p95 latency following the benign request volume."""
        n = int((self.end - self.start) // _MIN)
        rng = np.random.default_rng([self.seed, 7])
        minutes = np.fromiter(
            (int((e.at - self.start) // _MIN) for e in benign), dtype=np.int64, count=len(benign)
        )
        counts = np.bincount(minutes, minlength=n)[:n].astype(np.float64)
        load = np.convolve(counts, np.ones(7) / 7.0, mode="same")
        scale = max(float(np.quantile(load, 0.99)), 1.0)
        load = np.clip(load / scale, 0.0, 1.3)
        cpu = 0.07 + 0.38 * load + rng.normal(0.0, 0.015, n)
        net = (1.5 + 30.0 * load) * rng.lognormal(0.0, 0.15, n)
        lat = (35.0 + 45.0 * load) * rng.lognormal(0.0, 0.12, n)
        minute_of_day = (np.arange(n) + (self.start % _DAY) / _MIN) % 1440
        backup = (minute_of_day >= 120) & (minute_of_day < 135)  # nightly backup at 02:00
        cpu[backup] += 0.2
        net[backup] += 80.0
        lat[backup] *= 1.3
        cpu = np.clip(cpu, 0.02, 0.97)
        return cpu.tolist(), net.tolist(), lat.tolist()

    def host_events(
        self,
        cpu: list[float],
        net: list[float],
        lat: list[float],
        labels: list[AttackClass],
    ) -> list[Event]:
        host = EventKind.HOST
        return [
            Event(self.start + m * _MIN + 30.0, host, cpu=c, net_mbps=w, latency_ms=la, label=lb)
            for m, (c, w, la, lb) in enumerate(zip(cpu, net, lat, labels, strict=True))
        ]

    # -- attacks ------------------------------------------------------------------------------

    def attack(
        self,
        attack: AttackClass,
        rng: random.Random,
        cpu: list[float],
        net: list[float],
        lat: list[float],
    ) -> tuple[list[Event], list[int]]:
        """One episode of ``attack``: its events and the host minutes it took over."""
        t0 = rng.uniform(self.attack_start, self.end - 10 * _MIN)
        a = _Attacker(self, rng, attack)
        if attack in (AttackClass.CPU_FLOOD, AttackClass.NETWORK_FLOOD):
            return a.flood(t0, cpu, net, lat)
        method = {
            AttackClass.BRUTE_FORCE: a.brute_force,
            AttackClass.CREDENTIAL_STUFFING: a.credential_stuffing,
            AttackClass.PASSWORD_SPRAYING: a.password_spraying,
            AttackClass.LOW_AND_SLOW: a.low_and_slow,
            AttackClass.SESSION_HIJACK: a.session_hijack,
            AttackClass.RECORD_SCRAPING: a.record_scraping,
            AttackClass.PRIVILEGE_PROBING: a.privilege_probing,
            AttackClass.TAMPERED_UPLOAD: a.tampered_upload,
            AttackClass.MALFORMED_UPLOAD: a.malformed_upload,
            AttackClass.MODEL_EXTRACTION: a.model_extraction,
        }[attack]
        method(t0)
        return [e for e in a.out if e.at < self.end], []


def _mistyped(rng: random.Random, name: str) -> str:
    """The name a failed sign-in typed: mostly the right one (a wrong password), sometimes a
    mistyped username or the person's e-mail address (names that are no account)."""
    r = rng.random()
    if r < _NAME_TYPO:
        cut = rng.randrange(1, len(name))
        return name[:cut] + name[cut + 1 :]
    if r < _NAME_TYPO + _EMAIL_AS_NAME:
        return f"{name}@{rng.choice(('clinic.example', 'mail.example'))}"
    return name


def _pick_place(rng: random.Random, places: list[_Place]) -> _Place:
    total = sum(p.weight for p in places)
    r = rng.random() * total
    for p in places:
        r -= p.weight
        if r < 0:
            return p
    return places[-1]


@dataclass(frozen=True, slots=True)
class _Upload:
    size: int = 0
    declared: str = ""
    sniffed: str = ""
    suite: int = 0
    key: int = 0
    header_ok: bool = True


_NO_UPLOAD = _Upload()


class _Attacker:
    """The infrastructure and the events of one attack episode."""

    def __init__(self, world: _World, rng: random.Random, label: AttackClass) -> None:
        self.w = world
        self.rng = rng
        self.label = label
        self.out: list[Event] = []

    # infrastructure: hosting (VPS), residential proxies, Tor exits, each with its own RTT
    def net(self, kind: str = "") -> _Net:
        rng = self.rng
        kind = kind or rng.choice(("vps", "vps", "proxy", "tor"))
        rtt = {
            "vps": rng.uniform(20.0, 180.0),
            "proxy": rng.uniform(90.0, 300.0),
            "tor": rng.uniform(250.0, 700.0),
        }[kind]
        a, b = rng.randint(11, 223), rng.randint(0, 255)
        if (a, b) in self.w.used_nets:  # an ISP the users are on: a residential botnet node
            b = (b + 1) % 256
        return _Net(a, b, rtt, 0.25, f"{a}.{b}.0.0/16")

    def address(self, net: _Net) -> str:
        return self.w._address(net, self.rng)

    def client(self, spoof: float = 0.4) -> str:
        rng = self.rng
        if rng.random() < spoof:  # a common browser's user agent
            return rng.choice(self.w.browsers)
        return rng.choice(self.w.tools) if rng.random() < 0.7 else f"{rng.getrandbits(64):016x}"

    def emit(
        self, at: float, kind: EventKind, actor: str, role: str, where: tuple[str, _Net, str],
        session: str = "", outcome: str = "ok", *, records: int = 0,
        patients: tuple[str, ...] = (), upload: _Upload | None = None, stored_data: bool = False,
    ) -> None:  # fmt: skip
        address, net, client = where
        rtt = net.rtt * self.rng.lognormvariate(0.0, net.jitter)
        u = upload or _NO_UPLOAD
        self.out.append(
            Event(at, kind, actor, role, address, net.prefix, client, session, rtt, outcome,
                  records, u.size, u.declared, u.sniffed, u.suite, u.key, u.header_ok,
                  stored_data, label=self.label, patients=patients)
        )  # fmt: skip

    def victim(self, roles: tuple[str, ...] = ("doctor", "patient", "labtech", "admin")) -> _User:
        pool = [u for u in self.w.users if u.role in roles] or self.w.users
        return self.rng.choice(pool)

    def breach_name(self) -> str:
        rng = self.rng
        return f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}{rng.randint(1, 9999)}"

    def session_id(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def after_login(self, t: float, user: _User, where: tuple[str, _Net, str], n: int) -> None:
        """What a thief does with a stolen login: reads across the clinic's records."""
        rng = self.rng
        sid = self.session_id()
        self.emit(t, EventKind.LOGIN_SUCCESS, user.name, user.role, where, sid)
        for _ in range(n):
            t += rng.expovariate(1 / 4.0)
            p = rng.choice(self.w.patient_ids)
            self.emit(t, EventKind.PHI_READ, user.name, user.role, where, sid, records=1,
                      patients=(p,))  # fmt: skip

    # -- authentication attacks ---------------------------------------------------------------

    def brute_force(self, t: float) -> None:
        rng = self.rng
        net = self.net(rng.choice(("vps", "vps", "tor")))
        where = (self.address(net), net, self.client(0.3))
        if rng.random() < 0.75:
            user = self.victim(("doctor", "admin", "labtech", "patient"))
            name, role = user.name, user.role
        else:
            user, name, role = None, rng.choice(_GUESSED_NAMES), ""
        mean_gap = rng.uniform(0.3, 3.0)
        for _ in range(rng.randint(30, 400)):
            self.emit(t, EventKind.LOGIN_FAILURE, name, role, where, outcome="failed")
            t += rng.expovariate(1 / mean_gap)
        if user is not None and rng.random() < 0.1:
            self.after_login(t, user, where, rng.randint(1, 8))

    def credential_stuffing(self, t: float) -> None:
        rng = self.rng
        bots = []
        for _ in range(rng.randint(30, 300)):
            net = self.net("proxy") if rng.random() < 0.8 else self.net()
            bots.append((self.address(net), net, self.client(0.7)))
        real = [u for u in self.w.users if rng.random() < 0.5]
        accounts: list[tuple[str, str, _User | None]] = [(u.name, u.role, u) for u in real]
        for _ in range(rng.randint(100, 800)):
            accounts.append((self.breach_name(), "", None))
        rng.shuffle(accounts)
        duration = rng.uniform(10.0, 90.0) * _MIN
        for name, role, user in accounts:
            at = t + rng.random() * duration
            for _ in range(1 if rng.random() < 0.7 else 2):
                where = rng.choice(bots)
                if user is not None and rng.random() < 0.06:  # the password was reused
                    self.after_login(at, user, where, rng.randint(1, 10))
                    break
                self.emit(at, EventKind.LOGIN_FAILURE, name, role, where, outcome="failed")
                at += rng.uniform(1.0, 60.0)

    def password_spraying(self, t: float) -> None:
        rng = self.rng
        hosts = []
        for _ in range(rng.randint(1, 3)):
            net = self.net("vps")
            hosts.append((self.address(net), net, self.client(0.5)))
        accounts: list[tuple[str, str, _User | None]] = [
            (u.name, u.role, u) for u in self.w.users if rng.random() < 0.7
        ]
        accounts += [(n, "", None) for n in rng.sample(_GUESSED_NAMES, rng.randint(3, 12))]
        rng.shuffle(accounts)
        for _ in range(rng.randint(1, 2)):  # one or two common passwords, a round each
            gap = rng.uniform(0.5, 5.0)
            for name, role, user in accounts:
                where = rng.choice(hosts)
                if user is not None and rng.random() < 0.02:
                    self.after_login(t, user, where, rng.randint(1, 6))
                else:
                    self.emit(t, EventKind.LOGIN_FAILURE, name, role, where, outcome="failed")
                t += rng.expovariate(1 / gap)
            t += rng.uniform(10.0, 30.0) * _MIN  # wait out the lockout window

    def low_and_slow(self, t: float) -> None:
        rng = self.rng
        user = self.victim(("doctor", "admin", "labtech"))
        client = self.client(0.8)
        mean_gap = rng.uniform(3.0, 15.0) * _MIN
        for _ in range(rng.randint(15, 60)):
            net = self.net("proxy")  # every guess from another residential proxy
            self.emit(t, EventKind.LOGIN_FAILURE, user.name, user.role,
                      (self.address(net), net, client), outcome="failed")  # fmt: skip
            t += mean_gap * rng.uniform(0.5, 1.5)

    # -- abuse of a session or an account -----------------------------------------------------

    def session_hijack(self, t: float) -> None:
        rng = self.rng
        pool = [
            s for s in self.w.sessions
            if s.start >= self.w.attack_start and s.user.role in ("doctor", "patient", "labtech")
        ]  # fmt: skip
        if not pool:
            pool = self.w.sessions
        s = rng.choice(pool)
        user = s.user
        t = rng.uniform(s.start + 2 * _MIN, max(s.end, s.start + 3 * _MIN) + 20 * _MIN)
        net = self.net()
        client = self.client(0.6)
        while client in {c for p in user.places for c in p.clients}:
            client = f"{rng.getrandbits(64):016x}"
        where = (self.address(net), net, client)
        duration = rng.uniform(2.0, 15.0) * _MIN
        n = rng.randint(20, 200)
        for _ in range(n):
            t += rng.expovariate(n / duration)
            p = rng.choice(self.w.patient_ids)
            if user.role == "patient" and p != user.patient_id:
                self.emit(t, EventKind.ACCESS_DENIED, user.name, user.role, where, s.session,
                          outcome="denied", patients=(p,))  # fmt: skip
            elif rng.random() < 0.9:
                k = 1 if rng.random() < 0.6 else rng.randint(5, 50)
                self.emit(t, EventKind.PHI_READ, user.name, user.role, where, s.session,
                          records=k, patients=(p,))  # fmt: skip
            else:
                self.emit(t, EventKind.PHI_WRITE, user.name, user.role, where, s.session,
                          records=1, patients=(p,))  # fmt: skip

    def record_scraping(self, t: float) -> None:
        rng = self.rng
        user = self.victim(("doctor",))
        day = self.w.start + ((t - self.w.start) // _DAY) * _DAY
        hour = rng.uniform(0.5, 5.0) if rng.random() < 0.7 else rng.uniform(21.5, 23.5)
        t = max(day + hour * _HOUR, self.w.attack_start)
        if rng.random() < 0.5:  # an insider at home, on their own laptop
            place = user.places[1]
            where = (rng.choice(place.addresses), place.net, place.clients[0])
        else:
            net = self.net()
            where = (self.address(net), net, self.client(0.7))
        sid = self.session_id()
        self.emit(t, EventKind.LOGIN_SUCCESS, user.name, user.role, where, sid)
        per_minute = rng.uniform(100.0, 600.0)  # records
        page = rng.choice((1, 1, 10, 25, 50))
        end = t + rng.uniform(3.0, 30.0) * _MIN
        rate = min(per_minute / page, 600.0) / _MIN  # requests per second
        while t < end and len(self.out) < 6000:
            t += rng.expovariate(rate)
            touched = tuple(rng.sample(self.w.patient_ids, min(page, 5)))
            self.emit(t, EventKind.PHI_READ, user.name, user.role, where, sid, records=page,
                      patients=touched)  # fmt: skip

    def privilege_probing(self, t: float) -> None:
        rng = self.rng
        user = self.victim(("patient", "patient", "labtech", "doctor"))
        if rng.random() < 0.6:
            place = user.places[0]
            address = rng.choice(place.addresses) if place.addresses else self.address(place.net)
            where = (address, place.net, place.clients[0])
        else:
            net = self.net()
            where = (self.address(net), net, self.client(0.3))
        sid = self.session_id()
        self.emit(t, EventKind.LOGIN_SUCCESS, user.name, user.role, where, sid)
        base = rng.randint(1000, 900_000)
        gap = rng.uniform(0.3, 3.0)
        for k in range(rng.randint(20, 300)):
            t += rng.expovariate(1 / gap)
            if rng.random() < 0.05 and user.panel:
                self.emit(t, EventKind.PHI_READ, user.name, user.role, where, sid, records=1,
                          patients=(user.panel[0],))  # fmt: skip
            else:
                self.emit(t, EventKind.ACCESS_DENIED, user.name, user.role, where, sid,
                          outcome="denied", patients=(f"pt-{base + k:010d}",))  # fmt: skip

    # -- uploads --------------------------------------------------------------------------------

    def uploader(self) -> tuple[_User, tuple[str, _Net, str], str]:
        rng = self.rng
        user = self.victim(("labtech", "labtech", "doctor", "patient"))
        if rng.random() < 0.5:
            place = user.places[0]
            address = rng.choice(place.addresses) if place.addresses else self.address(place.net)
            where = (address, place.net, place.clients[0])
        else:
            net = self.net()
            where = (self.address(net), net, self.client(0.5))
        sid = self.session_id()
        return user, where, sid

    def tampered_upload(self, t: float) -> None:
        rng = self.rng
        user, where, sid = self.uploader()
        self.emit(t, EventKind.LOGIN_SUCCESS, user.name, user.role, where, sid)
        for _ in range(rng.randint(3, 20)):
            t += rng.uniform(5.0, 90.0)
            kind, median, _ = rng.choice(_UPLOAD_TYPES)
            ok = rng.random() < 0.6
            suite = rng.choice(_SUITE_IDS)
            up = _Upload(int(median * rng.lognormvariate(0.0, 0.7)), kind, kind, suite,
                         _SUITE_KEYS[suite], ok)  # fmt: skip
            patients = (rng.choice(self.w.patient_ids),)
            self.emit(t, EventKind.UPLOAD, user.name, user.role, where, sid, records=1,
                      patients=patients, upload=up)  # fmt: skip
            failure = (
                EventKind.SIGNATURE_FAILURE if rng.random() < 0.5 else EventKind.DECRYPTION_FAILURE
            )
            self.emit(t + rng.uniform(0.05, 1.0), failure, user.name, user.role, where, sid,
                      "failed", records=1, patients=patients, upload=up)  # fmt: skip
        if rng.random() < 0.6:  # stored files were altered too: a clinician's read trips the tag
            for _ in range(rng.randint(1, 4)):
                reader = self.victim(("doctor",))
                place = reader.places[0]
                at = t + rng.uniform(1.0, 240.0) * _MIN
                where = (rng.choice(place.addresses), place.net, place.clients[0])
                self.emit(at, EventKind.DECRYPTION_FAILURE, reader.name, reader.role, where,
                          self.session_id(), outcome="failed", stored_data=True, records=1,
                          patients=(rng.choice(self.w.patient_ids),))  # fmt: skip

    def malformed_upload(self, t: float) -> None:
        rng = self.rng
        user, where, sid = self.uploader()
        self.emit(t, EventKind.LOGIN_SUCCESS, user.name, user.role, where, sid)
        for _ in range(rng.randint(3, 40)):
            t += rng.uniform(1.0, 30.0)
            kind, median, _ = rng.choice(_UPLOAD_TYPES)
            size = int(median * rng.lognormvariate(0.0, 0.7))
            sniffed, suite, ok = kind, rng.choice(_SUITE_IDS), True
            key = _SUITE_KEYS[suite]
            flaws = rng.sample(("type", "key", "suite", "size", "header"), rng.randint(1, 3))
            if "type" in flaws:
                sniffed = rng.choice(_BAD_SNIFFED)
            if "key" in flaws:
                key = rng.choice(_BAD_KEY_BYTES)
            if "suite" in flaws:
                suite = rng.choice(_BAD_SUITES)
            if "size" in flaws:
                size = int(rng.uniform(0.5e9, 8e9))
            if "header" in flaws:
                ok = False
            up = _Upload(size, kind, sniffed, suite, key, ok)
            self.emit(t, EventKind.UPLOAD, user.name, user.role, where, sid, "failed", upload=up)

    # -- model extraction and floods --------------------------------------------------------------

    def model_extraction(self, t: float) -> None:
        rng = self.rng
        user = self.victim(("doctor",))
        net = self.net("vps")
        where = (self.address(net), net, rng.choice(self.w.tools))
        sid = self.session_id()
        self.emit(t, EventKind.LOGIN_SUCCESS, user.name, user.role, where, sid)
        rate = rng.uniform(1.0, 15.0)  # calls per second, inputs sweeping a grid
        n = min(int(rate * rng.uniform(5.0, 60.0) * _MIN), rng.randint(300, 2000))
        for _ in range(n):
            t += rng.expovariate(rate)
            self.emit(t, EventKind.PREDICTION, user.name, user.role, where, sid, records=1)

    def flood(
        self, t: float, cpu: list[float], net: list[float], lat: list[float]
    ) -> tuple[list[Event], list[int]]:
        rng = self.rng
        w = self.w
        duration = rng.uniform(5.0, 30.0) * _MIN
        first = int((t - w.start) // _MIN)
        minutes = list(range(first, min(len(cpu), first + int(duration // _MIN) + 1)))
        for m in minutes:
            if self.label is AttackClass.CPU_FLOOD:
                cpu[m] = rng.uniform(0.88, 1.0)
                lat[m] *= rng.uniform(6.0, 25.0)
                net[m] *= rng.uniform(1.0, 1.8)
            else:
                net[m] = net[m] * rng.uniform(15.0, 60.0) + 200.0
                lat[m] *= rng.uniform(4.0, 15.0)
                cpu[m] = min(0.99, cpu[m] + rng.uniform(0.15, 0.35))
        n = min(int(rng.uniform(1.0, 5.0) * duration), 2000)
        if self.label is AttackClass.CPU_FLOOD:
            bots = []
            for _ in range(rng.randint(3, 30)):
                bnet = self.net()
                bots.append((self.address(bnet), bnet, self.client(0.2)))
            logins = rng.random() < 0.6  # argon2 makes every login attempt expensive
            for _ in range(n):
                at = t + rng.random() * duration
                where = rng.choice(bots)
                if logins:
                    self.emit(at, EventKind.LOGIN_FAILURE, self.breach_name(), "", where,
                              outcome="failed")  # fmt: skip
                else:
                    self.emit(at, EventKind.ACCESS_DENIED, "", "", where, outcome="denied")
        else:
            bots = []
            for _ in range(rng.randint(50, 400)):
                bnet = self.net("proxy")
                bots.append((self.address(bnet), bnet, self.client(0.3)))
            for _ in range(n):
                at = t + rng.random() * duration
                junk = _Upload(size=rng.randint(10_000, 5_000_000))
                self.emit(at, EventKind.PACKET_REJECTED, "", "", rng.choice(bots), outcome="failed",
                          upload=junk)  # fmt: skip
        return [e for e in self.out if e.at < w.end], minutes
