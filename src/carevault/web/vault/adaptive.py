"""The adaptive encryption policy on the write path (issue 6): what each write's inputs are, the
decision, and its log.

Every PHI write (:meth:`PhiModel.seal`) and every lab file asks :func:`decide` which suite to
use. The inputs come from the request being served (role, the session's recent risk), the host
telemetry the security layer samples anyway (CPU, request latency and rate) and the write itself
(data class, size); the system floor is the one the response layer raises during incidents.
Nothing here may fail a write: when an input cannot be had it takes its safe default, and the
policy itself falls back to the strongest suite (see :mod:`carevault.security.policy`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Max
from django.http import HttpRequest
from django.utils import timezone

from carevault.crypto import CryptoError, Suite
from carevault.security.baseline import latest_model_version
from carevault.security.policy import (
    MODEL_NAME,
    DataClass,
    Decision,
    EncryptionPolicy,
    PolicyInputs,
    load_policy,
)

from .models import EncryptionDecision

logger = logging.getLogger(__name__)

# How far back a session's risk counts for its writes: the window the detectors look at.
RISK_WINDOW = dt.timedelta(minutes=15)

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


def system_floor() -> Suite | None:
    """The floor the response layer raised, if one is in force."""
    from carevault.web.securitycore import state

    floor = state.current_floor()
    if floor is None:
        return None
    try:
        return Suite.parse(floor.suite)
    except CryptoError:
        # A floor naming no suite we know: the strongest protects more than any guess.
        logger.warning("the raised floor names an unknown suite; using the strongest")
        return Suite.HYBRID_X25519_AES_256_GCM


def _role(request: HttpRequest | None) -> str:
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return "system"
    return str(getattr(user, "role", "") or "system")


def _session_risk(request: HttpRequest | None) -> float:
    """The highest risk the detectors gave this session's events in the last window (0 for
    writes outside a session: commands, jobs). Looked up once per request."""
    if request is None:
        return 0.0
    cached = getattr(request, "_carevault_write_risk", None)
    if isinstance(cached, float):
        return cached
    risk = 0.0
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if key:
        from carevault.web.clientinfo import session_hash
        from carevault.web.securitycore.models import SecurityEvent

        found = SecurityEvent.objects.filter(
            session=session_hash(str(key)), at__gte=timezone.now() - RISK_WINDOW
        ).aggregate(top=Max("risk"))["top"]
        risk = float(found) if found is not None else 0.0
    request._carevault_write_risk = risk  # type: ignore[attr-defined]
    return risk


def _load() -> tuple[float, float, float]:
    """(CPU %, request latency p95 ms, requests per second) from the last host sample this
    process took (zeros before the first one)."""
    try:
        from carevault.web.securitycore.runtime import runtime

        sample = runtime().last_host
    except Exception:  # telemetry is a hint, never a reason to fail a write
        return 0.0, 0.0, 0.0
    if sample is None:
        return 0.0, 0.0, 0.0
    interval = max(1, int(settings.SECURITY_TELEMETRY_SECONDS))
    return sample.cpu * 100.0, sample.latency_p95_ms, sample.requests / interval


def inputs_for(data_class: DataClass, payload_bytes: int) -> PolicyInputs:
    from carevault.web.securitycore.context import current_request

    request = current_request()
    cpu, latency, traffic = _load()
    return PolicyInputs(
        data_class=data_class,
        payload_bytes=int(payload_bytes),
        role=_role(request),
        risk=min(1.0, max(0.0, _session_risk(request))),
        cpu_percent=cpu,
        latency_ms=latency,
        traffic_rps=traffic,
        constrained_device=False,
    )


def decide(data_class: DataClass, payload_bytes: int) -> Decision:
    """The suite for one write, with its reason."""
    return policy().decide(inputs_for(data_class, payload_bytes), system_floor=system_floor())


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
