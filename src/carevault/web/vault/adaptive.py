"""The adaptive encryption policy on the write path (issue 6): what each write's inputs are, the
decision, and its log.

Every PHI write (:meth:`PhiModel.seal`) and every lab file asks :func:`decide` which suite to
use. The inputs come from the write's explicit :class:`~carevault.web.vault.context.WriteContext`
(role, the session's recent risk, the host telemetry the security layer samples anyway: CPU,
request latency and rate) and the write itself (data class, size); the system floor is the one
the response layer raises during incidents, asked of the registered risk source. Nothing here
may fail a write: when an input cannot be had it takes its safe default, and the policy itself
falls back to the strongest suite (see :mod:`carevault.security.policy`).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from carevault.crypto import Suite
from carevault.security import data_classes
from carevault.security.baseline import latest_model_version
from carevault.security.policy import (
    MODEL_NAME,
    DataClass,
    Decision,
    EncryptionPolicy,
    PolicyInputs,
)
from carevault.security.policy_model import load_policy

from .context import WriteContext, risk_source
from .models import EncryptionDecision

_lock = threading.Lock()
_policy: EncryptionPolicy | None = None
_policy_seen = -1
_policy_checked = 0.0


def policy() -> EncryptionPolicy:
    """The process's policy: the sealed trained one, reloaded when a newer version is sealed
    (``carevault security train-policy``), else the strongest-suite fallback."""
    global _policy, _policy_seen, _policy_checked
    with _lock:
        now = time.monotonic()
        if _policy is None or now - _policy_checked >= settings.SECURITY_MODEL_CHECK_SECONDS:
            _policy_checked = now
            data_dir = Path(settings.DATA_DIR)
            seen = latest_model_version(data_dir, MODEL_NAME)
            if _policy is None or seen != _policy_seen:
                _policy, _policy_seen = load_policy(data_dir), seen
        return _policy


def reset() -> None:
    """Forget the loaded policy (tests; after training one)."""
    global _policy, _policy_seen
    with _lock:
        _policy, _policy_seen = None, -1


def inputs_for(ctx: WriteContext, data_class: DataClass, payload_bytes: int) -> PolicyInputs:
    """The policy's inputs for one write: its context, the record's data class (raised to the
    context's when the writer named a stronger one), its size."""
    if ctx.data_class is not None:
        data_class = data_classes.strongest(data_class, ctx.data_class)
    return PolicyInputs(
        data_class=data_class,
        payload_bytes=int(payload_bytes),
        role=ctx.role,
        risk=min(1.0, max(0.0, ctx.session_risk)),
        cpu_percent=ctx.load.cpu_percent,
        latency_ms=ctx.load.latency_ms,
        traffic_rps=ctx.load.traffic_rps,
        constrained_device=False,
    )


def decide(ctx: WriteContext, data_class: DataClass, payload_bytes: int) -> Decision:
    """The suite for one write of ``payload_bytes`` of ``data_class`` data in ``ctx``, with its
    reason. The system floor is asked for here, at every decision, not kept in the context: a
    floor raised during an incident lifts every write from then on, system writes included."""
    return policy().decide(
        inputs_for(ctx, data_class, payload_bytes), system_floor=risk_source().system_floor()
    )


_LOGGED = ["patient_id", "suite", "source", "reason", "floor", "proposed", "inputs", "decided_at"]


def _keep(table: str, row: Any, **fields: Any) -> None:
    # One upsert (INSERT ... ON CONFLICT DO UPDATE on SQLite and PostgreSQL), not a locked
    # read then a write: this runs on every record write.
    EncryptionDecision.objects.bulk_create(
        [EncryptionDecision(table=table, row=str(row), decided_at=timezone.now(), **fields)],
        update_conflicts=True,
        unique_fields=["table", "row"],
        update_fields=_LOGGED,
    )


def log_decision(table: str, row: Any, patient_id: Any, decision: Decision) -> None:
    """Keep the record's latest decision (one row per record, replaced on every write)."""
    _keep(
        table,
        row,
        patient_id=patient_id,
        suite=decision.suite.label,
        source=decision.source,
        reason=decision.reason[:300],
        floor=decision.floor.label,
        proposed=decision.proposed.label if decision.proposed else "",
        inputs=decision.inputs.as_log(),
    )


def log_reencryption(table: str, row: Any, patient_id: Any, suite: Suite, reason: str) -> None:
    """A record the re-encryption job moved up to ``suite``."""
    _keep(
        table,
        row,
        patient_id=patient_id,
        suite=suite.label,
        source="reencrypt",
        reason=f"{suite.label} because: re-encrypted, {reason}"[:300],
        floor=suite.label,
        proposed="",
        inputs={},
    )
