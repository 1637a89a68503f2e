"""Features: one fixed-length float vector per event, from the event and sliding windows.

A :class:`FeatureExtractor` is stateful and owns one stream (one per scorer on the request
path; a fresh one per training or evaluation stream). ``transform_one(event)`` updates the state
and returns the event's vector; ``transform(events)`` does the same for a whole stream and
returns a 2-D array whose rows equal what ``transform_one`` would have returned. Events should
arrive in time order; a late event is treated as happening at the latest time seen.

State is bounded: short windows are keyed by account, address, session and client and dropped
when idle longer than their horizon; per-account habits (hours, clients, networks, round-trip
times, read volume) are kept only for accounts that exist (``role`` set) and authenticated,
expire after ``profile_ttl`` seconds idle and are capped at ``max_profiles``; every keyed table
is also capped at ``max_keys`` (oldest keys dropped first). Attackers inventing names or
addresses therefore cannot grow memory without bound.

Habits are learned from what the account did after authenticating: clients and networks from
successful logins only (a stolen session id used from elsewhere does not teach the profile its
new network), hours from successful events (at most once per ten minutes), round-trip times
from successful events on an already known network, read volume once a minute with outliers
clipped (so a scraper does not quickly become its own baseline).

All values are finite. Counts are raw (``COUNT_FEATURES``; models that need scale should
``log1p`` them); the explanations show them as they are. Hours are the clinic's local time
(``utc_offset_hours``).

=========================  ==================================================================
feature                    meaning
=========================  ==================================================================
kind_<kind>                one-hot of ``Event.kind`` (12 columns, one per ``EventKind``)
role_<role>                one-hot of ``Event.role`` (doctor, patient, labtech, admin);
                           ``role_unknown``: no role (a name that is no account, or no
                           account at all); all 0 on host samples
fail_account_1m            failed logins for this account name in the last minute
                           (including this event)
fail_account_1h            ... in the last hour
fail_account_1d            ... in the last 24 hours (low-and-slow guessing)
fail_address_1m            failed logins from this address in the last minute
fail_address_1h            ... in the last hour
accounts_address_10m       distinct account names tried (login events) from this address in
                           the last 10 min (spraying; a clinic NAT shows a few)
addresses_account_1h       distinct addresses that tried to log in to this account (1 h)
fail_global_5m             failed logins system-wide in the last 5 min (login events only;
                           credential stuffing from many addresses)
rejects_global_1m          rejected packets system-wide in the last minute
rate_actor_1m              events by this account in the last minute
rate_address_1m            events from this address in the last minute
reads_actor_1m             PHI records read by this account in the last minute
reads_ratio                reads_actor_1m / the account's usual records per minute
records_log                log1p(records touched by this event)
hour_surprise              log(1 / (24 p)), p the account's share of activity at this hour
                           (smoothed over neighbouring hours): 0 = uniform or no history,
                           negative = a usual hour, large = an hour the account never uses
new_client                 1 if the account never logged in with this client (or has no
                           history), else 0
new_network                1 if the account never logged in from this network, else 0
rtt_dev                    abs(log rtt - the account's usual log rtt on this network, or on
                           its nearest known network) / 0.3, capped at 30; 0 without history
session_address_changed    1 if the session is used from another address than it began on
session_network_changed    1 if from another network
session_client_changed     1 if from another client
upload_log_bytes           log1p(upload bytes)
type_mismatch              1 if the sniffed type differs from the declared one (or is not
                           recognised), 0.5 if only a generic type was declared, else 0
suite_invalid              1 if a suite id is present and is not a CareVault suite
key_invalid                1 if a key length is present and is not 16, 24 or 32 bytes
header_bad                 1 if an uploaded ciphertext header did not parse
stored_data_failure        1 if a decryption failed on data at rest (tampering)
crypto_fail_actor_10m      signature / decryption failures by this account in 10 min
denied_actor_10m           access denials of this account in the last 10 min
denied_address_10m         access denials of this address in the last 10 min
pred_actor_1m              prediction calls by this account in the last minute
pred_client_1m             prediction calls by this client in the last minute
cpu                        host CPU use 0..1 (host samples; 0 for requests, as all four host
                           features are)
cpu_dev                    (cpu - its recent baseline) / its usual deviation
net_dev                    log((throughput + 1) / (baseline + 1))
latency_dev                log((p95 latency + 1) / (baseline + 1))
=========================  ==================================================================
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

from carevault.crypto.suites import Suite

from .events import Event, EventKind

__all__ = ["COUNT_FEATURES", "FEATURE_NAMES", "FeatureExtractor", "explain"]

_KINDS: tuple[EventKind, ...] = tuple(EventKind)
_ROLES: tuple[str, ...] = ("doctor", "patient", "labtech", "admin")

FEATURE_NAMES: Final[tuple[str, ...]] = (
    *(f"kind_{k.value}" for k in _KINDS),
    *(f"role_{r}" for r in _ROLES),
    "role_unknown",
    "fail_account_1m",
    "fail_account_1h",
    "fail_account_1d",
    "fail_address_1m",
    "fail_address_1h",
    "accounts_address_10m",
    "addresses_account_1h",
    "fail_global_5m",
    "rejects_global_1m",
    "rate_actor_1m",
    "rate_address_1m",
    "reads_actor_1m",
    "reads_ratio",
    "records_log",
    "hour_surprise",
    "new_client",
    "new_network",
    "rtt_dev",
    "session_address_changed",
    "session_network_changed",
    "session_client_changed",
    "upload_log_bytes",
    "type_mismatch",
    "suite_invalid",
    "key_invalid",
    "header_bad",
    "stored_data_failure",
    "crypto_fail_actor_10m",
    "denied_actor_10m",
    "denied_address_10m",
    "pred_actor_1m",
    "pred_client_1m",
    "cpu",
    "cpu_dev",
    "net_dev",
    "latency_dev",
)

COUNT_FEATURES: Final[frozenset[str]] = frozenset(
    {
        "fail_account_1m",
        "fail_account_1h",
        "fail_account_1d",
        "fail_address_1m",
        "fail_address_1h",
        "accounts_address_10m",
        "addresses_account_1h",
        "fail_global_5m",
        "rejects_global_1m",
        "rate_actor_1m",
        "rate_address_1m",
        "reads_actor_1m",
        "crypto_fail_actor_10m",
        "denied_actor_10m",
        "denied_address_10m",
        "pred_actor_1m",
        "pred_client_1m",
    }
)

N_FEATURES: Final = len(FEATURE_NAMES)
_I = {name: i for i, name in enumerate(FEATURE_NAMES)}
_KIND_INDEX = {k: _I[f"kind_{k.value}"] for k in _KINDS}
_ROLE_INDEX = {r: _I[f"role_{r}"] for r in _ROLES}
_ROLE_UNKNOWN = _I["role_unknown"]
_FAIL_ACC_1M = _I["fail_account_1m"]
_FAIL_ACC_1H = _I["fail_account_1h"]
_FAIL_ACC_1D = _I["fail_account_1d"]
_FAIL_ADDR_1M = _I["fail_address_1m"]
_FAIL_ADDR_1H = _I["fail_address_1h"]
_ACCOUNTS_ADDR = _I["accounts_address_10m"]
_ADDRS_ACCOUNT = _I["addresses_account_1h"]
_FAIL_GLOBAL = _I["fail_global_5m"]
_REJECTS_GLOBAL = _I["rejects_global_1m"]
_RATE_ACTOR = _I["rate_actor_1m"]
_RATE_ADDR = _I["rate_address_1m"]
_READS = _I["reads_actor_1m"]
_READS_RATIO = _I["reads_ratio"]
_RECORDS = _I["records_log"]
_HOUR = _I["hour_surprise"]
_NEW_CLIENT = _I["new_client"]
_NEW_NETWORK = _I["new_network"]
_RTT_DEV = _I["rtt_dev"]
_SESS_ADDR = _I["session_address_changed"]
_SESS_NET = _I["session_network_changed"]
_SESS_CLIENT = _I["session_client_changed"]
_UPLOAD_BYTES = _I["upload_log_bytes"]
_TYPE_MISMATCH = _I["type_mismatch"]
_SUITE_INVALID = _I["suite_invalid"]
_KEY_INVALID = _I["key_invalid"]
_HEADER_BAD = _I["header_bad"]
_STORED = _I["stored_data_failure"]
_CRYPTO_FAIL = _I["crypto_fail_actor_10m"]
_DENIED_ACTOR = _I["denied_actor_10m"]
_DENIED_ADDR = _I["denied_address_10m"]
_PRED_ACTOR = _I["pred_actor_1m"]
_PRED_CLIENT = _I["pred_client_1m"]
_CPU = _I["cpu"]
_CPU_DEV = _I["cpu_dev"]
_NET_DEV = _I["net_dev"]
_LAT_DEV = _I["latency_dev"]

ALLOWED_SUITES: Final[frozenset[int]] = frozenset(s.suite_id for s in Suite)
VALID_KEY_BYTES: Final[frozenset[int]] = frozenset({16, 24, 32})
_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})

_LOGIN_SUCCESS = EventKind.LOGIN_SUCCESS
_PHI_READ = EventKind.PHI_READ

_V = TypeVar("_V")
_MIN = 60.0
_RTT_SCALE = 0.3  # typical spread of log round-trip time on one network
_HABIT_STEP = 600.0  # learn an account's hour of activity at most once per ten minutes
_MAX_CLIENTS = 8
_MAX_NETWORKS = 8


class _Profile:
    """What an account usually does (long-term, learned after authentication)."""

    __slots__ = (
        "clients",
        "hours",
        "hours_total",
        "last",
        "networks",
        "next_hour",
        "next_reads",
        "reads",
    )

    def __init__(self) -> None:
        self.hours = [0.0] * 24
        self.hours_total = 0.0  # sum(hours), kept as it changes (whole counts: exact)
        self.clients: dict[str, float] = {}
        self.networks: dict[str, float] = {}  # network -> mean log rtt (nan: not measured yet)
        self.reads = 3.0  # usual records read per minute (a prior until learned)
        self.next_hour = 0.0
        self.next_reads = 0.0
        self.last = 0.0


class _Session:
    __slots__ = ("address", "client", "last", "network")

    def __init__(self, address: str, network: str, client: str, last: float) -> None:
        self.address = address
        self.network = network
        self.client = client
        self.last = last


class _Host:
    __slots__ = ("cpu", "cpu_dev", "lat", "net")

    def __init__(self, cpu: float, net: float, lat: float) -> None:
        self.cpu = cpu
        self.cpu_dev = 0.03
        self.net = net
        self.lat = lat


def _push(table: dict[str, deque[float]], key: str, now: float, horizon: float) -> int:
    q = table.get(key)
    if q is None:
        q = table[key] = deque()
    q.append(now)
    edge = now - horizon
    while q[0] <= edge:
        q.popleft()
    return len(q)


def _peek(table: dict[str, deque[float]], key: str, now: float, horizon: float) -> int:
    q = table.get(key)
    if not q:
        return 0
    edge = now - horizon
    while q and q[0] <= edge:
        q.popleft()
    return len(q)


class _Distinct:
    """Distinct values seen for one key in a window."""

    __slots__ = ("counts", "q")

    def __init__(self) -> None:
        self.q: deque[tuple[float, str]] = deque()
        self.counts: dict[str, int] = {}

    def trim(self, edge: float) -> int:
        q, counts = self.q, self.counts
        while q and q[0][0] <= edge:
            _, value = q.popleft()
            left = counts[value] - 1
            if left:
                counts[value] = left
            else:
                del counts[value]
        return len(counts)

    def add(self, now: float, value: str) -> None:
        self.q.append((now, value))
        self.counts[value] = self.counts.get(value, 0) + 1


class FeatureExtractor:
    """Turns a stream of events into feature vectors (see the module docstring)."""

    def __init__(
        self,
        *,
        utc_offset_hours: float = 0.0,
        max_keys: int = 100_000,
        max_profiles: int = 100_000,
        profile_ttl: float = 90 * 86_400.0,
        session_ttl: float = 12 * 3_600.0,
    ) -> None:
        self.utc_offset_hours = utc_offset_hours
        self.max_keys = max_keys
        self.max_profiles = max_profiles
        self.profile_ttl = profile_ttl
        self.session_ttl = session_ttl
        self._offset = utc_offset_hours * 3_600.0
        self._now = -math.inf
        self._next_sweep = -math.inf
        self._since_sweep = 0
        # windows of timestamps: table, horizon (seconds)
        self._fail_acc_1m: dict[str, deque[float]] = {}
        self._fail_acc_1h: dict[str, deque[float]] = {}
        self._fail_acc_1d: dict[str, deque[float]] = {}
        self._fail_addr_1m: dict[str, deque[float]] = {}
        self._fail_addr_1h: dict[str, deque[float]] = {}
        self._rate_actor: dict[str, deque[float]] = {}
        self._rate_addr: dict[str, deque[float]] = {}
        self._crypto_fail: dict[str, deque[float]] = {}
        self._denied_actor: dict[str, deque[float]] = {}
        self._denied_addr: dict[str, deque[float]] = {}
        self._pred_actor: dict[str, deque[float]] = {}
        self._pred_client: dict[str, deque[float]] = {}
        self._windows: tuple[tuple[dict[str, deque[float]], float], ...] = (
            (self._fail_acc_1m, _MIN),
            (self._fail_acc_1h, 3_600.0),
            (self._fail_acc_1d, 86_400.0),
            (self._fail_addr_1m, _MIN),
            (self._fail_addr_1h, 3_600.0),
            (self._rate_actor, _MIN),
            (self._rate_addr, _MIN),
            (self._crypto_fail, 600.0),
            (self._denied_actor, 600.0),
            (self._denied_addr, 600.0),
            (self._pred_actor, _MIN),
            (self._pred_client, _MIN),
        )
        self._reads: dict[str, deque[tuple[float, int]]] = {}
        self._reads_sum: dict[str, int] = {}
        self._accounts_addr: dict[str, _Distinct] = {}
        self._addrs_account: dict[str, _Distinct] = {}
        # System-wide windows saturate at max_keys entries rather than grow in a flood.
        self._fail_global: deque[float] = deque(maxlen=max_keys)
        self._rejects_global: deque[float] = deque(maxlen=max_keys)
        self._sessions: dict[str, _Session] = {}  # where each session began
        self._profiles: dict[str, _Profile] = {}
        self._hosts: dict[str, _Host] = {}

    # -- public API -----------------------------------------------------------------------------

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    def explain(self, vector: Sequence[float] | npt.NDArray[np.float64]) -> dict[str, float]:
        """The features of ``vector`` that stand out, most unusual first (see :func:`explain`)."""
        return explain(vector, ranked=True)

    def transform_one(self, event: Event) -> npt.NDArray[np.float64]:
        """The feature vector of ``event`` (updates the windows and habits)."""
        return np.array(self._row(event), dtype=np.float64)

    def transform(self, events: Iterable[Event]) -> npt.NDArray[np.float64]:
        """Rows for a stream of events, equal to calling ``transform_one`` on each in turn."""
        values = array("d")  # a flat buffer: far cheaper than numpy's list-of-lists conversion
        extend, row = values.extend, self._row
        for e in events:
            extend(row(e))
        return np.frombuffer(values, dtype=np.float64).reshape(-1, N_FEATURES)

    def state_size(self) -> int:
        """How many keys the extractor holds (for monitoring and the memory test)."""
        sizes = [len(t) for t, _ in self._windows]
        sizes += [len(self._reads), len(self._accounts_addr), len(self._addrs_account)]
        sizes += [len(self._sessions), len(self._profiles), len(self._hosts)]
        return sum(sizes) + len(self._fail_global) + len(self._rejects_global)

    # -- the work -------------------------------------------------------------------------------

    def _row(self, e: Event) -> list[float]:
        at = e.at
        now = at if at > self._now else self._now
        self._now = now
        self._since_sweep += 1
        if now >= self._next_sweep or self._since_sweep >= self.max_keys:
            self._sweep(now)

        row = [0.0] * N_FEATURES
        kind = e.kind
        row[_KIND_INDEX[kind]] = 1.0
        _FILL[kind](self, e, row, now)
        return row

    # -- one filler per event kind (the table _FILL below the class) ----------------------------
    # Each counts what only its kind counts (pushing the event into that kind's windows), then
    # :meth:`_request` fills what every request has. Windows are independent of each other, so
    # counting first and reading the rest after gives exactly the values of one pass in order.

    def _on_host(self, e: Event, row: list[float], now: float) -> None:
        self._host(e, row)

    def _on_login_failure(self, e: Event, row: list[float], now: float) -> None:
        actor, address = e.actor, e.address
        if actor:
            row[_FAIL_ACC_1M] = _push(self._fail_acc_1m, actor, now, _MIN)
            row[_FAIL_ACC_1H] = _push(self._fail_acc_1h, actor, now, 3_600.0)
            row[_FAIL_ACC_1D] = _push(self._fail_acc_1d, actor, now, 86_400.0)
        if address:
            row[_FAIL_ADDR_1M] = _push(self._fail_addr_1m, address, now, _MIN)
            row[_FAIL_ADDR_1H] = _push(self._fail_addr_1h, address, now, 3_600.0)
        self._fail_global.append(now)
        self._login(e, row, now)
        self._request(e, row, now)

    def _on_login_success(self, e: Event, row: list[float], now: float) -> None:
        # A login starts the session afresh: it is compared with itself below (no change).
        if e.session:
            self._sessions[e.session] = _Session(e.address, e.network, e.client, now)
        self._login(e, row, now)
        self._request(e, row, now)

    def _on_packet_rejected(self, e: Event, row: list[float], now: float) -> None:
        self._rejects_global.append(now)
        self._request(e, row, now)

    def _on_phi_read(self, e: Event, row: list[float], now: float) -> None:
        self._request(e, row, now, e.records)

    def _on_crypto_failure(self, e: Event, row: list[float], now: float) -> None:
        if e.actor:
            row[_CRYPTO_FAIL] = _push(self._crypto_fail, e.actor, now, 600.0)
        self._request(e, row, now)

    def _on_access_denied(self, e: Event, row: list[float], now: float) -> None:
        if e.actor:
            row[_DENIED_ACTOR] = _push(self._denied_actor, e.actor, now, 600.0)
        if e.address:
            row[_DENIED_ADDR] = _push(self._denied_addr, e.address, now, 600.0)
        self._request(e, row, now)

    def _on_prediction(self, e: Event, row: list[float], now: float) -> None:
        if e.actor:
            row[_PRED_ACTOR] = _push(self._pred_actor, e.actor, now, _MIN)
        if e.client:
            row[_PRED_CLIENT] = _push(self._pred_client, e.client, now, _MIN)
        self._request(e, row, now)

    # -- what every request has ----------------------------------------------------------------

    def _login(self, e: Event, row: list[float], now: float) -> None:
        """Login attempts only: failures system-wide, and who tried from where."""
        fg = self._fail_global
        edge = now - 300.0
        while fg and fg[0] <= edge:
            fg.popleft()
        row[_FAIL_GLOBAL] = len(fg)
        actor, address = e.actor, e.address
        if address and actor:
            d = self._accounts_addr.get(address)
            if d is None:
                d = self._accounts_addr[address] = _Distinct()
            d.add(now, actor)
            d = self._addrs_account.get(actor)
            if d is None:
                d = self._addrs_account[actor] = _Distinct()
            d.add(now, address)

    def _request(self, e: Event, row: list[float], now: float, records_read: int = 0) -> None:
        """The features of any request (``records_read``: PHI records this event read)."""
        actor, address, role = e.actor, e.address, e.role
        ri = _ROLE_INDEX.get(role)
        row[_ROLE_UNKNOWN if ri is None else ri] = 1.0
        self._recall(actor, address, row, now)
        rq = self._rejects_global
        if rq:
            edge = now - _MIN
            while rq and rq[0] <= edge:
                rq.popleft()
            row[_REJECTS_GLOBAL] = len(rq)
        if address:
            row[_RATE_ADDR] = _push(self._rate_addr, address, now, _MIN)
        if e.records:
            row[_RECORDS] = math.log1p(e.records)
        profile: _Profile | None = None
        reads = 0
        if actor:
            profile = self._profiles.get(actor)
            row[_RATE_ACTOR] = _push(self._rate_actor, actor, now, _MIN)
            reads = self._read_count(actor, now, records_read)
            row[_READS] = reads
            base = profile.reads if profile is not None else 3.0
            row[_READS_RATIO] = reads / (base if base > 1.0 else 1.0)
            self._habits(e, row, now, profile)
        self._session(e, row, now)
        self._payload(e, row)
        # Learn after computing: an event is judged against the past only.
        if actor and role and e.outcome == "ok":
            self._learn(e, now, profile, reads)

    def _recall(self, actor: str, address: str, row: list[float], now: float) -> None:
        """The windows this event's kind did not count itself: how many recent ones there were.
        A kind that counted a window has set its feature already (to 1 or more: the count
        includes the event), so a zero here means "not counted by this kind"."""
        if actor:
            if not row[_FAIL_ACC_1D] and actor in self._fail_acc_1d:
                row[_FAIL_ACC_1M] = _peek(self._fail_acc_1m, actor, now, _MIN)
                row[_FAIL_ACC_1H] = _peek(self._fail_acc_1h, actor, now, 3_600.0)
                row[_FAIL_ACC_1D] = _peek(self._fail_acc_1d, actor, now, 86_400.0)
            if not row[_CRYPTO_FAIL] and actor in self._crypto_fail:
                row[_CRYPTO_FAIL] = _peek(self._crypto_fail, actor, now, 600.0)
            if not row[_DENIED_ACTOR] and actor in self._denied_actor:
                row[_DENIED_ACTOR] = _peek(self._denied_actor, actor, now, 600.0)
            d = self._addrs_account.get(actor)
            if d is not None:
                row[_ADDRS_ACCOUNT] = d.trim(now - 3_600.0)
        if address:
            if not row[_FAIL_ADDR_1H] and address in self._fail_addr_1h:
                row[_FAIL_ADDR_1M] = _peek(self._fail_addr_1m, address, now, _MIN)
                row[_FAIL_ADDR_1H] = _peek(self._fail_addr_1h, address, now, 3_600.0)
            if not row[_DENIED_ADDR] and address in self._denied_addr:
                row[_DENIED_ADDR] = _peek(self._denied_addr, address, now, 600.0)
            d = self._accounts_addr.get(address)
            if d is not None:
                row[_ACCOUNTS_ADDR] = d.trim(now - 600.0)

    def _habits(self, e: Event, row: list[float], now: float, profile: _Profile | None) -> None:
        """How unusual the hour, client, network and round-trip time are for this account."""
        if profile is None:
            row[_NEW_CLIENT] = 1.0
            row[_NEW_NETWORK] = 1.0
            return
        hours = profile.hours
        h = int(((now + self._offset) % 86_400.0) // 3_600.0)
        p = (hours[h] + 0.5 * (hours[h - 1] + hours[(h + 1) % 24]) + 0.5) / (
            2.0 * profile.hours_total + 12.0
        )
        row[_HOUR] = -math.log(24.0 * p)
        networks = profile.networks
        row[_NEW_CLIENT] = 0.0 if e.client in profile.clients else 1.0
        known = networks.get(e.network)
        row[_NEW_NETWORK] = 0.0 if known is not None else 1.0
        rtt = e.rtt_ms
        if rtt > 0.0 and networks:
            lr = math.log(rtt)
            if known is not None and known == known:  # measured (not nan)
                dev = abs(lr - known)
            else:
                dev = min((abs(lr - m) for m in networks.values() if m == m), default=0.0)
            row[_RTT_DEV] = min(dev / _RTT_SCALE, 30.0)

    def _session(self, e: Event, row: list[float], now: float) -> None:
        """Whether the session moved to another address, network or client since it began."""
        sid = e.session
        if not sid:
            return
        s = self._sessions.get(sid)
        if s is None:
            self._sessions[sid] = _Session(e.address, e.network, e.client, now)
            return
        s.last = now
        if s.address != e.address:
            row[_SESS_ADDR] = 1.0
        if s.network != e.network:
            row[_SESS_NET] = 1.0
        if s.client != e.client:
            row[_SESS_CLIENT] = 1.0

    def _payload(self, e: Event, row: list[float]) -> None:
        """Uploads and cryptographic parameters the request carried."""
        if e.upload_bytes:
            row[_UPLOAD_BYTES] = math.log1p(e.upload_bytes)
        declared, sniffed = e.declared_type, e.sniffed_type
        if (declared or sniffed) and declared != sniffed:
            row[_TYPE_MISMATCH] = 0.5 if sniffed and declared in _GENERIC_TYPES else 1.0
        if e.suite_id and e.suite_id not in ALLOWED_SUITES:
            row[_SUITE_INVALID] = 1.0
        if e.key_bytes and e.key_bytes not in VALID_KEY_BYTES:
            row[_KEY_INVALID] = 1.0
        if not e.header_ok:
            row[_HEADER_BAD] = 1.0
        if e.stored_data and e.kind is not _LOGIN_SUCCESS:
            row[_STORED] = 1.0

    def _read_count(self, actor: str, now: float, records: int) -> int:
        """PHI records the account read in the last minute, ``records`` (this event's) included."""
        q = self._reads.get(actor)
        if q is None:
            if not records:
                return 0
            q = self._reads[actor] = deque()
            self._reads_sum[actor] = 0
        total = self._reads_sum[actor]
        if records:
            q.append((now, records))
            total += records
        edge = now - _MIN
        while q and q[0][0] <= edge:
            total -= q.popleft()[1]
        self._reads_sum[actor] = total
        return total

    def _learn(self, e: Event, now: float, profile: _Profile | None, reads: float) -> None:
        kind = e.kind
        if profile is None:
            if kind is not _LOGIN_SUCCESS:
                return  # habits start with an authenticated login
            profile = self._profiles[e.actor] = _Profile()
        profile.last = now
        network = e.network
        if kind is _LOGIN_SUCCESS:
            _learn_login(profile, e, now)
        elif e.rtt_ms > 0.0:
            m = profile.networks.get(network)
            if m is not None:
                lr = math.log(e.rtt_ms)
                profile.networks[network] = lr if m != m else m + 0.05 * (lr - m)
        if now >= profile.next_hour:
            profile.next_hour = now + _HABIT_STEP
            profile.hours[int(((now + self._offset) % 86_400.0) // 3_600.0)] += 1.0
            profile.hours_total += 1.0
        if kind is _PHI_READ and now >= profile.next_reads:
            profile.next_reads = now + _MIN
            base = profile.reads
            x = min(reads, 2.0 * base + 2.0)  # a burst moves the baseline only a little
            profile.reads = base + 0.05 * (x - base)

    def _host(self, e: Event, row: list[float]) -> None:
        cpu, net, lat = e.cpu, max(e.net_mbps, 0.0), max(e.latency_ms, 0.0)
        row[_CPU] = cpu
        h = self._hosts.get(e.address)
        if h is None:
            self._hosts[e.address] = _Host(cpu, math.log1p(net), math.log1p(lat))
            return
        dev = h.cpu_dev
        r = cpu - h.cpu
        row[_CPU_DEV] = r / dev
        ln, ll = math.log1p(net), math.log1p(lat)
        row[_NET_DEV] = ln - h.net
        row[_LAT_DEV] = ll - h.lat
        # Baselines follow the daily pattern; residuals are clipped so an attack that lasts
        # half an hour cannot become the new normal.
        clip = 3.0 * dev
        rc = max(-clip, min(clip, r))
        h.cpu += 0.05 * rc
        h.cpu_dev = max(0.02, dev + 0.01 * (abs(rc) - dev))
        h.net += 0.05 * max(-0.3, min(0.3, ln - h.net))
        h.lat += 0.05 * max(-0.3, min(0.3, ll - h.lat))

    # -- bounded memory ---------------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + 300.0
        self._since_sweep = 0
        self._sweep_windows(now)
        self._sweep_accounts(now)

    def _sweep_windows(self, now: float) -> None:
        """Drop keys whose windows are empty or idle past their horizon, then cap each table."""
        cap = self.max_keys
        for table, horizon in self._windows:
            edge = now - horizon
            for key in [k for k, q in table.items() if not q or q[-1] <= edge]:
                del table[key]
            _cap(table, cap)
        for q, horizon in ((self._fail_global, 300.0), (self._rejects_global, _MIN)):
            edge = now - horizon
            while q and q[0] <= edge:
                q.popleft()
        edge = now - _MIN
        for key in [k for k, q in self._reads.items() if not q or q[-1][0] <= edge]:
            del self._reads[key]
            del self._reads_sum[key]
        if len(self._reads) > cap:
            for key in list(self._reads)[: len(self._reads) - cap]:
                del self._reads[key]
                del self._reads_sum[key]
        for dtable, horizon in ((self._accounts_addr, 600.0), (self._addrs_account, 3_600.0)):
            edge = now - horizon
            for key in [k for k, d in dtable.items() if not d.q or d.q[-1][0] <= edge]:
                del dtable[key]
            _cap(dtable, cap)

    def _sweep_accounts(self, now: float) -> None:
        """Drop idle sessions and profiles (and the oldest past their caps), cap the hosts."""
        cap = self.max_keys
        edge = now - self.session_ttl
        sessions = self._sessions
        for key in [k for k, s in sessions.items() if s.last <= edge]:
            del sessions[key]
        _cap(sessions, cap)
        profiles = self._profiles
        edge = now - self.profile_ttl
        for key in [k for k, p in profiles.items() if p.last <= edge]:
            del profiles[key]
        if len(profiles) > self.max_profiles:
            by_age = sorted(profiles, key=lambda k: profiles[k].last)
            for key in by_age[: len(profiles) - self.max_profiles]:
                del profiles[key]
        _cap(self._hosts, cap)


def _learn_login(profile: _Profile, e: Event, now: float) -> None:
    """An authenticated login teaches the profile its client and network (bounded: the least
    recently used client and the first learned network make room)."""
    clients = profile.clients
    if e.client not in clients and len(clients) >= _MAX_CLIENTS:
        del clients[min(clients, key=clients.__getitem__)]
    clients[e.client] = now
    networks = profile.networks
    if e.network not in networks:
        if len(networks) >= _MAX_NETWORKS:
            del networks[next(iter(networks))]
        networks[e.network] = math.log(e.rtt_ms) if e.rtt_ms > 0.0 else math.nan


_Filler = Callable[[FeatureExtractor, Event, list[float], float], None]

# What each kind of event fills (see FeatureExtractor._on_*): one entry per EventKind.
_FILL: Final[dict[EventKind, _Filler]] = {
    EventKind.LOGIN_SUCCESS: FeatureExtractor._on_login_success,
    EventKind.LOGIN_FAILURE: FeatureExtractor._on_login_failure,
    EventKind.PACKET_REJECTED: FeatureExtractor._on_packet_rejected,
    EventKind.PHI_READ: FeatureExtractor._on_phi_read,
    EventKind.PHI_WRITE: FeatureExtractor._request,
    EventKind.ACCESS_DENIED: FeatureExtractor._on_access_denied,
    EventKind.UPLOAD: FeatureExtractor._request,
    EventKind.SIGNATURE_FAILURE: FeatureExtractor._on_crypto_failure,
    EventKind.DECRYPTION_FAILURE: FeatureExtractor._on_crypto_failure,
    EventKind.PREDICTION: FeatureExtractor._on_prediction,
    EventKind.KEY_OPERATION: FeatureExtractor._request,
    EventKind.HOST: FeatureExtractor._on_host,
}
if set(_FILL) != set(EventKind):  # a new kind must say what it fills
    raise RuntimeError(f"no feature filler for {set(EventKind) - set(_FILL)}")


def _cap(table: dict[str, _V], cap: int) -> None:
    excess = len(table) - cap
    if excess > 0:
        for key in list(table)[:excess]:  # oldest inserted first
            del table[key]


# The value at which each feature starts to look unusual: ``explain(..., ranked=True)`` orders
# features by value / scale, so the explanation leads with what stood out, not with one-hots.
_SALIENCE_SCALE: dict[str, float] = {
    "fail_account_1m": 3.0,
    "fail_account_1h": 5.0,
    "fail_account_1d": 10.0,
    "fail_address_1m": 3.0,
    "fail_address_1h": 10.0,
    "accounts_address_10m": 5.0,
    "addresses_account_1h": 3.0,
    "fail_global_5m": 20.0,
    "rejects_global_1m": 10.0,
    "rate_actor_1m": 20.0,
    "rate_address_1m": 60.0,
    "reads_actor_1m": 30.0,
    "reads_ratio": 5.0,
    "records_log": 3.0,
    "hour_surprise": 2.0,
    "new_client": 1.0,
    "new_network": 1.0,
    "rtt_dev": 5.0,
    "session_address_changed": 1.0,
    "session_network_changed": 0.8,
    "session_client_changed": 0.8,
    "upload_log_bytes": 19.0,  # ~200 MB
    "type_mismatch": 1.0,
    "suite_invalid": 0.8,
    "key_invalid": 0.8,
    "header_bad": 1.0,
    "stored_data_failure": 0.25,
    "crypto_fail_actor_10m": 1.0,
    "denied_actor_10m": 3.0,
    "denied_address_10m": 5.0,
    "pred_actor_1m": 5.0,
    "pred_client_1m": 5.0,
    "cpu": 0.7,
    "cpu_dev": 4.0,
    "net_dev": 1.5,
    "latency_dev": 1.5,
}
_SCALES = np.array([_SALIENCE_SCALE.get(n, math.inf) for n in FEATURE_NAMES], dtype=np.float64)


def explain(
    vector: Sequence[float] | npt.NDArray[np.float64], *, ranked: bool = False
) -> dict[str, float]:
    """Feature name -> value for one vector.

    ``ranked=False``: every feature, in ``FEATURE_NAMES`` order. ``ranked=True``: only the
    features that stand out (value above zero on their salience scale), most unusual first,
    then the event's kind and role one-hots, for explanations and the dashboard.
    """
    values = np.asarray(vector, dtype=np.float64).ravel()
    if values.shape[0] != N_FEATURES:
        raise ValueError(f"expected {N_FEATURES} features, got {values.shape[0]}")
    if not ranked:
        return {name: float(v) for name, v in zip(FEATURE_NAMES, values, strict=True)}
    salience = np.maximum(values, 0.0) / _SCALES
    order = np.argsort(-salience, kind="stable")
    out = {FEATURE_NAMES[i]: float(values[i]) for i in order if salience[i] > 0.0}
    out.update({FEATURE_NAMES[i]: 1.0 for i in np.flatnonzero(values) if _SCALES[i] == math.inf})
    return out
