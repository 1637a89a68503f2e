"""Host telemetry: CPU, memory, network throughput and request latency, sampled with psutil and
turned into :class:`~carevault.security.events.Event` (kind ``HOST``) for the same scorer that
scores requests (CPU and network floods, a server slowing down under attack).

A sampler is cheap and non-blocking: CPU use is measured since the previous sample
(``psutil.cpu_percent(interval=None)``), throughput from the difference of the network counters
between samples, latency from the requests the web layer reported in between
(:class:`LatencyWindow`, p95). The first sample primes the counters at construction, so every
sample covers a real interval.

Memory use is kept on :class:`HostSample` (the dashboard shows it) but has no field on
:class:`Event`; the events contract would need one for the detectors to learn from it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped]  # no stubs are pinned

from .events import Event, EventKind


class LatencyWindow:
    """The latencies of the most recent requests (thread-safe), for a p95 per sample."""

    def __init__(self, size: int = 2048) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, milliseconds: float) -> None:
        with self._lock:
            self._values.append(float(milliseconds))

    def drain_p95(self) -> tuple[float, int]:
        """(p95 in ms, how many requests) since the last drain; (0, 0) when there were none."""
        with self._lock:
            values = sorted(self._values)
            self._values.clear()
        if not values:
            return 0.0, 0
        index = max(0, math.ceil(0.95 * len(values)) - 1)
        return values[index], len(values)


@dataclass(frozen=True)
class HostSample:
    at: float
    cpu: float  # 0..1, all cores, since the previous sample
    memory: float  # 0..1 of physical memory in use
    net_mbps: float  # sent + received, megabits per second since the previous sample
    latency_p95_ms: float  # p95 of the requests reported since the previous sample
    requests: int  # how many requests that p95 is over

    def to_event(self) -> Event:
        return Event(
            at=self.at,
            kind=EventKind.HOST,
            outcome="ok",
            cpu=self.cpu,
            net_mbps=self.net_mbps,
            latency_ms=self.latency_p95_ms,
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "at": self.at,
            "cpu": self.cpu,
            "memory": self.memory,
            "net_mbps": self.net_mbps,
            "latency_p95_ms": self.latency_p95_ms,
            "requests": self.requests,
        }


class HostSampler:
    """Takes :class:`HostSample` s; :meth:`due` says whether ``interval`` seconds have passed."""

    def __init__(
        self,
        latency: LatencyWindow | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.latency = latency or LatencyWindow()
        self._clock = clock
        self._lock = threading.Lock()
        psutil.cpu_percent(interval=None)  # primes the counter: the next call covers a real span
        self._last_at = clock()
        self._last_bytes = self._net_bytes()

    @staticmethod
    def _net_bytes() -> int:
        counters = psutil.net_io_counters()
        return int(counters.bytes_sent + counters.bytes_recv) if counters is not None else 0

    def due(self, interval: float) -> bool:
        return self._clock() - self._last_at >= interval

    def sample(self) -> HostSample:
        with self._lock:
            return self._sample_locked()

    def take_if_due(self, interval: float) -> HostSample | None:
        """A sample when ``interval`` seconds have passed since the last one, else None. The
        check and the sample happen under one lock: of several threads asking at once, one
        samples."""
        with self._lock:
            if self._clock() - self._last_at < interval:
                return None
            return self._sample_locked()

    def _sample_locked(self) -> HostSample:
        now = self._clock()
        net = self._net_bytes()
        elapsed = max(now - self._last_at, 1e-3)
        mbps = max(net - self._last_bytes, 0) * 8 / 1e6 / elapsed
        self._last_at, self._last_bytes = now, net
        latency, requests = self.latency.drain_p95()
        return HostSample(
            at=now,
            cpu=psutil.cpu_percent(interval=None) / 100.0,
            memory=psutil.virtual_memory().percent / 100.0,
            net_mbps=round(mbps, 3),
            latency_p95_ms=round(latency, 3),
            requests=requests,
        )
