"""The process's diagnosis service and query guard (issue 7), and where their security events go.

One :class:`DiagnosisService` per process serves the sealed diagnosis models (it keeps serving
the last good model when a newer one is refused); one :class:`QueryGuard` per process meters
each client (budget + extraction monitor + output policy), but what it counts lives in the
shared store (shared_stores.py): every worker and app server charges the same budgets and adds
to the same histories, so each limit holds once, not once per process.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import numpy as np
from django.conf import settings

from carevault.modelguard import dataset
from carevault.modelguard.budgets import BudgetLimits, QueryBudget
from carevault.modelguard.diagnosis import DiagnosisService
from carevault.modelguard.extraction import ExtractionMonitor
from carevault.modelguard.guard import ClientKind, QueryGuard
from carevault.modelguard.models import LOGISTIC, LinearForm, linear_form

from .shared_stores import SharedBudgetStore, SharedMonitorStore

# Workers read the clock before they take the store's lock: their charges may arrive a little
# out of order, which is not time going backwards.
CLOCK_TOLERANCE = dt.timedelta(seconds=30)

_lock = threading.Lock()
_service: DiagnosisService | None = None
_guard: QueryGuard | None = None


def report_refused_model(kind: str, details: dict[str, Any]) -> None:
    """A sealed model was refused (tampered, rolled back, unsigned): an alert in the audit log,
    which the security layer treats like any stored data that fails its check."""
    from carevault.web.audit.log import Outcome, record

    record(
        "model.refused",
        outcome=Outcome.ALERT,
        target_type="modelguard.model",
        target_id=str(details.get("model", "")),
        details={
            "event": kind,
            "model": str(details.get("model", "")),
            "version": details.get("version"),
            "reason": str(details.get("reason", "")),
            "serving_version": details.get("serving_version"),
        },
    )


def service() -> DiagnosisService:
    global _service
    with _lock:
        if _service is None:
            _service = DiagnosisService.for_data_dir(
                settings.DATA_DIR, on_security_event=report_refused_model
            )
        return _service


def guard() -> QueryGuard:
    global _guard
    with _lock:
        if _guard is None:
            # The monitor's reference is the public training distribution the models were fit
            # on: queries far from it (probes of the feature box) are what it looks for.
            reference = dataset.load_split().X_train
            monitor = ExtractionMonitor(
                np.asarray(reference, dtype=np.float64), store=SharedMonitorStore()
            )
            _guard = QueryGuard(
                monitor, budget_store=SharedBudgetStore(), budget_tolerance=CLOCK_TOLERANCE
            )
        return _guard


# Homomorphic scoring: the server never sees the features, so the extraction monitor has nothing
# to look at; every patient scored counts against the doctor's API query budget, the same budget
# as its label-only API queries (issue 14: a channel with a budget of its own was a second,
# 25 times larger, budget for the same model), and against the homomorphic cap below.
_he_budget: QueryBudget | None = None
_he_model: tuple[int, LinearForm] | None = None


def charge_homomorphic(
    client_id: str, patients: int, now: dt.datetime, *, user_pk: object = None
) -> None:
    """Count ``patients`` encrypted scores for ``client_id``, or BudgetExceeded (nothing
    charged when the whole batch does not fit). With ``user_pk``, the batch is first charged to
    that user's API query budget (shared with the label-only API), then to the homomorphic cap."""
    global _he_budget
    if user_pk is not None:
        guard().charge_blind(f"{ClientKind.API.value}:{user_pk}", patients, now, ClientKind.API)
    with _lock:
        if _he_budget is None:
            _he_budget = QueryBudget(
                BudgetLimits(settings.HE_PATIENTS_PER_HOUR, settings.HE_PATIENTS_PER_DAY),
                SharedBudgetStore(),
                name="he",
                tolerance=CLOCK_TOLERANCE,
            )
        budget = _he_budget
    # The whole batch in one charge (all or nothing), outside the process lock: the shared
    # store has its own.
    budget.charge(client_id, now, count=patients)


def homomorphic_model() -> tuple[int, LinearForm]:
    """The served logistic model's linear form (version, form), rebuilt when the version moves."""
    global _he_model
    serving = service().model(LOGISTIC)
    with _lock:
        if _he_model is None or _he_model[0] != serving.version:
            _he_model = (serving.version, linear_form(serving.pipeline))
        return _he_model


def reset() -> None:
    """Forget everything (tests; after sealing new models the service also finds them itself)."""
    global _service, _guard, _he_budget, _he_model
    with _lock:
        _service, _guard, _he_budget, _he_model = None, None, None, None
