"""The security layer's process globals: the configuration it reads from settings and the
loaded scorer with its health.

**The scorer per process.** :func:`runtime` loads the trained sealed model when the data
directory has one, else the baseline, once per process, and again when a newer model is sealed.
Each ``assess()`` is timed: the trained ensemble is budgeted at p99 <= 1 ms per event (issue 5),
and when the loaded scorer turns out slower than ``SECURITY_SYNC_BUDGET_MS`` (p95 of the last
512 calls) :meth:`Runtime.slow` says so, and :mod:`.scoring` defers the kinds that can wait.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from carevault.security.baseline import (
    BaselineLimits,
    BaselineScorer,
    LoadedScorer,
    latest_model_version,
    load_scorer_or_baseline,
)
from carevault.security.response import ResponseConfig, ResponsePolicy, Thresholds
from carevault.security.telemetry import HostSample, HostSampler, LatencyWindow

from .history import DbHistory

logger = logging.getLogger("carevault.security")

# -- configuration (read from settings on every use: tests and operators may change it) -----------


def thresholds() -> Thresholds:
    return Thresholds(*settings.SECURITY_RESPONSE_THRESHOLDS)


def response_config() -> ResponseConfig:
    return ResponseConfig(
        thresholds=thresholds(),
        address_block_seconds=int(settings.LOGIN_ADDRESS_BLOCK_SECONDS),
        floor_suite=str(settings.SECURITY_FLOOR_SUITE),
        floor_seconds=int(settings.SECURITY_FLOOR_HOURS) * 3600,
    )


def policy() -> ResponsePolicy:
    return ResponsePolicy(response_config())


def incident_threshold() -> float:
    configured = settings.SECURITY_INCIDENT_THRESHOLD
    return float(configured) if configured is not None else thresholds().step_up


def baseline_limits() -> BaselineLimits:
    """The login throttle's own limits, so the fallback agrees with it (baseline.py)."""
    return BaselineLimits(
        window_seconds=int(settings.LOGIN_ADDRESS_WINDOW_SECONDS),
        backoff_after=int(settings.LOGIN_BACKOFF_AFTER),
        account_failures=int(settings.LOGIN_SUSPEND_AFTER),
        address_failures=int(settings.LOGIN_ADDRESS_MAX_FAILURES),
        address_accounts=int(settings.LOGIN_ADDRESS_MAX_USERNAMES),
        access_denials=int(settings.SECURITY_PROBE_DENIALS),
        distinct_patients=int(settings.SECURITY_SCRAPING_PATIENTS),
    )


# -- the loaded scorer and its health --------------------------------------------------------------


@dataclass
class Runtime:
    loaded: LoadedScorer
    baseline: BaselineScorer
    loaded_at: float = field(default_factory=time.time)
    timings: deque[float] = field(default_factory=lambda: deque(maxlen=512))
    scored: int = 0
    errors: int = 0
    last_error: str = ""
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    sampler: HostSampler | None = None
    last_host: HostSample | None = None
    # Events this process stored unscored since its last batch, and when that batch ran.
    deferred: int = 0
    last_batch: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record_timing(self, ms: float) -> None:
        with self.lock:
            self.timings.append(ms)
            self.scored += 1

    def record_error(self, exc: BaseException) -> None:
        with self.lock:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    def percentile_ms(self, q: float) -> float:
        with self.lock:
            values = sorted(self.timings)
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(q * len(values)))]

    def slow(self) -> bool:
        with self.lock:
            enough = len(self.timings) >= 50
        return enough and self.percentile_ms(0.95) > float(settings.SECURITY_SYNC_BUDGET_MS)

    def health(self) -> dict[str, Any]:
        return {
            **self.loaded.as_dict(),
            "loaded_at": dt.datetime.fromtimestamp(self.loaded_at, tz=dt.UTC),
            "scored": self.scored,
            "p50_ms": round(self.percentile_ms(0.5), 3),
            "p95_ms": round(self.percentile_ms(0.95), 3),
            "budget_ms": float(settings.SECURITY_SYNC_BUDGET_MS),
            "deferring": self.slow(),
            "errors": self.errors,
            "last_error": self.last_error,
        }


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()
# The newest sealed model version in the data directory when the runtime was built, and when
# that was last looked at: `carevault security train` in another process seals a new version,
# and every worker picks it up within SECURITY_MODEL_CHECK_SECONDS without a restart.
_model_seen: int = 0
_model_checked: float = 0.0


def runtime() -> Runtime:
    """The process's scorer: the trained sealed model when the data directory has one, else
    the baseline. Loaded once per process, and again when a newer model is sealed."""
    global _runtime, _model_seen, _model_checked
    with _runtime_lock:
        now = time.monotonic()
        if _runtime is not None and now - _model_checked >= settings.SECURITY_MODEL_CHECK_SECONDS:
            _model_checked = now
            newest = latest_model_version(Path(settings.DATA_DIR))
            if newest != _model_seen:
                logger.info("security scorer: a new sealed model (v%s) was found", newest)
                _runtime = None
        if _runtime is None:
            _model_seen = latest_model_version(Path(settings.DATA_DIR))
            _model_checked = now
            baseline = BaselineScorer(baseline_limits(), DbHistory())
            loaded = load_scorer_or_baseline(Path(settings.DATA_DIR), baseline)
            _runtime = Runtime(loaded=loaded, baseline=baseline)
            logger.info("security scorer: %s %s (%s)", loaded.kind, loaded.name, loaded.note)
        return _runtime


def reset_runtime() -> None:
    global _runtime
    with _runtime_lock:
        _runtime = None
