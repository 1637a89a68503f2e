"""The extraction monitor: a per-client analysis of the query stream that cuts a client off when
its queries look like model stealing rather than diagnosis.

Two tests, either of which raises the alarm (and the alarm sticks: the client stays cut off
until an operator clears it):

* **PRADA** (Juuti et al. 2019): for each new query, the minimum distance to the client's
  earlier queries (its "growing set"), in standardised feature units. Real cases a doctor sees
  give distances that are roughly normally distributed; synthetic and perturbed probes give a
  lumpy or skewed distribution. Once ``min_queries`` distances are in, a Shapiro-Wilk test on
  them alarms when ``W < delta``.
* **Off-manifold probes**: the Mahalanobis distance of the query from the training cases
  (OAS-shrunk covariance, so 30 strongly correlated features stay well conditioned while the
  feature box's corners still stand out; Ledoit-Wolf shrinks so hard that uniform box samples
  look no stranger than real cases). Equation solvers and retraining attackers that sample the
  feature box produce points no aspirate gives (a large radius with a small area). A point
  farther out than every training case counts as off the manifold, and ``ood_alarm`` such
  points among a client's last ``ood_window`` queries alarm: a doctor meets a rare, extreme
  case now and then, never several in a row; a box sampler sends little else.
* **Near-repeats**: many queries within ``repeat_radius`` of an earlier one (a probe walking
  around one case, or bisecting between two) alarm once they are more than ``repeat_share``
  of the stream; a doctor's follow-up of the same patient is one such query now and then.

What it cannot see, by construction: an attacker whose queries are real cases (a stolen or
public data set) looks exactly like a doctor. Budgets bound that attacker; nothing here does.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy.stats import shapiro
from sklearn.covariance import OAS

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Verdict:
    alert: bool
    statistic: float  # latest Shapiro-Wilk W (1.0 until there are enough distances)
    queries: int
    reason: str


@dataclass
class ClientState:
    """One client's history, as a :class:`MonitorStore` keeps it (``as_dict`` is JSON)."""

    growing: list[Array] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    off_manifold: int = 0  # in total, for the report
    recent_off: deque[bool] = field(default_factory=deque)  # the last ood_window queries
    repeats: int = 0
    queries: int = 0
    statistic: float = 1.0
    alert_reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "growing": [[float(v) for v in z] for z in self.growing],
            "distances": [float(d) for d in self.distances],
            "off_manifold": int(self.off_manifold),
            "recent_off": [bool(o) for o in self.recent_off],
            "repeats": int(self.repeats),
            "queries": int(self.queries),
            "statistic": float(self.statistic),
            "alert_reason": str(self.alert_reason),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientState:
        return cls(
            growing=[np.asarray(z, dtype=np.float64) for z in data.get("growing", [])],
            distances=[float(d) for d in data.get("distances", [])],
            off_manifold=int(data.get("off_manifold", 0)),
            recent_off=deque(bool(o) for o in data.get("recent_off", [])),
            repeats=int(data.get("repeats", 0)),
            queries=int(data.get("queries", 0)),
            statistic=float(data.get("statistic", 1.0)),
            alert_reason=str(data.get("alert_reason", "")),
        )


_T = TypeVar("_T")


class MonitorStore(Protocol):
    """Where the monitor keeps each client's history. ``update`` runs ``change`` on the
    client's state (None: no history yet) and stores what it returns, atomically with respect
    to every other user of the store; ``get`` reads, ``clear`` forgets. The web layer shares one
    store among its workers (web/diagnosis/shared_stores.py), so a client's queries form one
    history whichever worker answers them."""

    def update(
        self, client_id: str, change: Callable[[ClientState | None], tuple[ClientState, _T]]
    ) -> _T: ...

    def get(self, client_id: str) -> ClientState | None: ...

    def clear(self, client_id: str) -> None: ...


class MemoryMonitorStore:
    """The default: one process's memory, guarded by a lock."""

    def __init__(self) -> None:
        self._clients: dict[str, ClientState] = {}
        self._lock = threading.Lock()

    def update(
        self, client_id: str, change: Callable[[ClientState | None], tuple[ClientState, _T]]
    ) -> _T:
        with self._lock:
            state, result = change(self._clients.get(client_id))
            self._clients[client_id] = state
            return result

    def get(self, client_id: str) -> ClientState | None:
        with self._lock:
            return self._clients.get(client_id)

    def clear(self, client_id: str) -> None:
        with self._lock:
            self._clients.pop(client_id, None)


class ExtractionMonitor:
    def __init__(
        self,
        reference: Array,
        *,
        delta: float = 0.80,
        min_queries: int = 20,
        ood_margin: float = 1.0,
        ood_window: int = 10,
        ood_alarm: int = 3,
        repeat_radius: float = 1.0,
        repeat_share: float = 0.25,
        store: MonitorStore | None = None,
    ) -> None:
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 2 or reference.shape[0] < 10:
            raise ValueError("reference must be a matrix of at least ten training cases")
        if not 0 < delta < 1 or min_queries < 3 or ood_margin <= 0:
            raise ValueError("need 0 < delta < 1, min_queries >= 3 and ood_margin > 0")
        if not 1 <= ood_alarm <= ood_window:
            raise ValueError("need 1 <= ood_alarm <= ood_window")
        if repeat_radius < 0 or not 0 < repeat_share <= 1:
            raise ValueError("need repeat_radius >= 0 and 0 < repeat_share <= 1")
        self.n_features = reference.shape[1]
        self.repeat_radius, self.repeat_share = repeat_radius, repeat_share
        self.delta, self.min_queries = delta, min_queries
        self.ood_alarm, self.ood_window = ood_alarm, ood_window
        self._mean = reference.mean(axis=0)
        self._scale = reference.std(axis=0) + 1e-12
        z = (reference - self._mean) / self._scale
        self._precision = OAS().fit(z).precision_
        # The farthest training case sets the edge of the manifold; the window rule, not a
        # wide margin, is what keeps a doctor's occasional extreme case from alarming.
        self.ood_threshold = float(np.sqrt(self._mahalanobis_sq(z).max()) * ood_margin)
        self.store: MonitorStore = store if store is not None else MemoryMonitorStore()

    def _mahalanobis_sq(self, z: Array) -> Array:
        return np.asarray(np.einsum("ij,jk,ik->i", z, self._precision, z), dtype=np.float64)

    def mahalanobis(self, X: Array) -> Array:
        z = (np.atleast_2d(np.asarray(X, dtype=np.float64)) - self._mean) / self._scale
        return np.sqrt(self._mahalanobis_sq(z))

    def is_cut_off(self, client_id: str) -> bool:
        state = self.store.get(client_id)
        return bool(state and state.alert_reason)

    def clear(self, client_id: str) -> None:
        """An operator lifts the cut-off; the client starts a fresh history."""
        self.store.clear(client_id)

    def observe(self, client_id: str, x: Array) -> Verdict:
        if not isinstance(client_id, str) or not client_id.strip():
            raise ValueError("client id must be a non-empty string")
        x = np.asarray(x, dtype=np.float64).ravel()
        if x.shape != (self.n_features,) or not np.all(np.isfinite(x)):
            raise ValueError(f"a query must be {self.n_features} finite feature values")

        def change(state: ClientState | None) -> tuple[ClientState, Verdict]:
            state = state if state is not None else ClientState()
            return state, self._observe(state, x)

        return self.store.update(client_id, change)

    def _observe(self, state: ClientState, x: Array) -> Verdict:
        state.queries += 1
        if state.alert_reason:
            return Verdict(True, state.statistic, state.queries, state.alert_reason)
        z = (x - self._mean) / self._scale
        off = float(np.sqrt(self._mahalanobis_sq(z[None, :])[0])) > self.ood_threshold
        state.off_manifold += off
        state.recent_off.append(off)
        if len(state.recent_off) > self.ood_window:
            state.recent_off.popleft()
        recent_off = sum(state.recent_off)
        if state.growing:
            d_min = float(np.min(np.linalg.norm(np.asarray(state.growing) - z, axis=1)))
            if d_min < self.repeat_radius:
                # The same case measured again (a follow-up): not a new point of the client's
                # spread, but many of them are a probe walking around one case.
                state.repeats += 1
                d_min = -1.0
            else:
                state.distances.append(d_min)
            d = np.asarray(state.distances)
            # PRADA's growing-set rule: keep queries that are not close to an earlier one, so a
            # cloud of small perturbations does not hide behind its own tiny distances.
            if d.size and d_min > max(float(d.mean() - d.std()), 0.0):
                state.growing.append(z)
        else:
            state.growing.append(z)
        if recent_off >= self.ood_alarm:
            state.alert_reason = (
                f"{recent_off} of the last {len(state.recent_off)} queries far outside the "
                f"training cases (Mahalanobis > {self.ood_threshold:.1f})"
            )
        elif state.repeats >= 5 and state.repeats > self.repeat_share * state.queries:
            state.alert_reason = (
                f"{state.repeats} of {state.queries} queries are small variations of earlier ones"
            )
        elif len(state.distances) >= self.min_queries:
            d = np.sort(np.asarray(state.distances))
            # On the log scale: a doctor's minimum distances are roughly log-normal (real cases
            # cluster, with a long tail of rare ones); raw distances false-alarm on that tail.
            # The farthest 5% (at least one) are left out: one rare case, far from every other,
            # is what a doctor meets, and with 20 distances it alone pulls W below delta.
            logd = np.log(d[: len(d) - max(1, len(d) // 20)] + 1e-9)
            state.statistic = 0.0 if np.ptp(logd) == 0 else float(shapiro(logd).statistic)
            if state.statistic < self.delta:
                state.alert_reason = (
                    f"query distances not normal (Shapiro-Wilk W={state.statistic:.3f} "
                    f"< {self.delta})"
                )
        return Verdict(bool(state.alert_reason), state.statistic, state.queries, state.alert_reason)
