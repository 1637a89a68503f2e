"""One object the diagnosis service asks before and after every prediction: the client's query
budget, the extraction monitor and the output policy together (issue 7, "Output obfuscation and
extraction defence").

Which output each kind of client gets, and why:

* ``DOCTOR_UI``, a clinician on the patient page: the label and a confidence rounded to one
  decimal. A doctor weighs "0.6" and "0.9" differently; the second decimal adds nothing to a
  decision and is most of what an equation solver needs. Label loss: none (every policy keeps
  the label).
* ``API``, an authorised system integrating diagnoses: the label only. A machine acts on the
  label; a confidence would only serve to steal the model, and a reverse-sigmoid confidence
  would mislead a consumer that trusts it (it is deliberately miscalibrated).

Full confidences are never a default and are refused for API clients outright: with them, any
31 linearly independent queries, real cases included, give the model's exact weights, which no
budget or monitor can stop without also stopping doctors (docs/models-extraction.md).

The budgets' charges and the monitor's histories live in stores (:class:`BudgetStore`,
:class:`MonitorStore`): this process's memory by default, or stores every worker and app server
shares, which the web layer passes in (web/diagnosis/shared_stores.py), so that each budget and
each history is one, however many processes serve.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from .budgets import BudgetExceeded, BudgetLimits, BudgetStore, QueryBudget
from .extraction import ExtractionMonitor
from .obfuscation import DEFAULT_SETTINGS, ObfuscatedOutput, OutputPolicy, PolicySettings
from .obfuscation import obfuscate as _obfuscate


class ClientKind(enum.Enum):
    DOCTOR_UI = "doctor-ui"
    API = "api"


@dataclass(frozen=True)
class ServingConfig:
    policy: OutputPolicy
    limits: BudgetLimits


DEFAULT_CONFIG: Mapping[ClientKind, ServingConfig] = MappingProxyType(
    {
        # A busy clinician diagnoses a few dozen cases a day; the budget leaves room for that.
        ClientKind.DOCTOR_UI: ServingConfig(OutputPolicy.ROUNDED, BudgetLimits(40, 200)),
        # An integration batches its requests, but has no reason to ask more than a ward does.
        ClientKind.API: ServingConfig(OutputPolicy.LABEL_ONLY, BudgetLimits(20, 100)),
    }
)


@dataclass(frozen=True)
class GuardVerdict:
    """Whether to answer a query. ``reason`` names the rule, never the query's values."""

    allowed: bool
    reason: str
    cut_off: bool  # the monitor has cut the client off until an operator clears it
    newly_cut_off: bool  # this query raised the alarm: report it to threat detection once
    retry_after: timedelta | None  # set when only the budget refused


class QueryGuard:
    """Budget + extraction monitor + output policy, per client, thread-safe."""

    def __init__(
        self,
        monitor: ExtractionMonitor,
        config: Mapping[ClientKind, ServingConfig] = DEFAULT_CONFIG,
        *,
        settings: PolicySettings = DEFAULT_SETTINGS,
        rng: np.random.Generator | None = None,
        budget_store: BudgetStore | None = None,
        budget_tolerance: timedelta = timedelta(0),
    ) -> None:
        missing = set(ClientKind) - set(config)
        if missing:
            raise ValueError(f"no serving configuration for {sorted(k.value for k in missing)}")
        if config[ClientKind.API].policy is OutputPolicy.FULL:
            raise ValueError("API clients must never get full confidences")
        if any(c.policy is OutputPolicy.NOISY for c in config.values()) and rng is None:
            raise ValueError("the noisy policy needs a random generator (rng=)")
        self.monitor = monitor
        self.config = MappingProxyType(dict(config))
        self.settings = settings
        self._rng = rng
        self._budgets = {
            kind: QueryBudget(c.limits, budget_store, name=kind.value, tolerance=budget_tolerance)
            for kind, c in self.config.items()
        }
        self._lock = threading.Lock()

    def check(
        self,
        client_id: str,
        x: NDArray[np.float64],
        now: datetime,
        client_kind: ClientKind = ClientKind.API,
    ) -> GuardVerdict:
        """Decide on one query before the model runs; an allowed query counts against the
        client's budget and joins its history in the monitor."""
        if not isinstance(client_kind, ClientKind):
            raise TypeError(f"client kind must be a ClientKind, got {type(client_kind).__name__}")
        with self._lock:
            if self.monitor.is_cut_off(client_id):
                return GuardVerdict(False, "cut off by the extraction monitor", True, False, None)
            try:
                self._budgets[client_kind].charge(client_id, now)
            except BudgetExceeded as exc:
                return GuardVerdict(
                    False, f"query budget per {exc.window} used", False, False, exc.retry_after
                )
            verdict = self.monitor.observe(client_id, x)
            if verdict.alert:
                return GuardVerdict(False, verdict.reason, True, True, None)
            return GuardVerdict(True, "", False, False, None)

    def charge_blind(
        self, client_id: str, count: int, now: datetime, client_kind: ClientKind = ClientKind.API
    ) -> None:
        """Count ``count`` queries the service cannot see (encrypted patients: homomorphic
        scoring) against the same budget as ``client_kind``'s clear queries, all or nothing;
        raises :class:`BudgetExceeded`. A client the monitor has cut off is refused too (as a
        full budget, with a day to wait): it may not switch to a channel the monitor is blind
        to. The monitor itself has nothing to look at."""
        if not isinstance(client_kind, ClientKind):
            raise TypeError(f"client kind must be a ClientKind, got {type(client_kind).__name__}")
        if self.monitor.is_cut_off(client_id):
            raise BudgetExceeded(client_id, "cut-off", 0, timedelta(days=1))
        self._budgets[client_kind].charge(client_id, now, count=count)

    def release(self, proba: float, label: int, client_kind: ClientKind) -> ObfuscatedOutput:
        """What the client sees of the model's P(malignant) ``proba`` and its ``label``."""
        if not isinstance(client_kind, ClientKind):
            raise TypeError(f"client kind must be a ClientKind, got {type(client_kind).__name__}")
        policy = self.config[client_kind].policy
        with self._lock:  # the generator behind the noisy policy is not thread-safe
            out = _obfuscate(policy, proba, rng=self._rng, settings=self.settings)
        if label != out.label:
            # The service's label is P(malignant) >= 0.5; anything else is a caller's bug, and
            # releasing a confidence on the other side of the label would contradict it.
            raise ValueError("the label does not match the probability (label = P >= 0.5)")
        return out

    def clear(self, client_id: str) -> None:
        """An operator lifts a cut-off; the client's monitor history starts afresh."""
        with self._lock:
            self.monitor.clear(client_id)
