"""The security layer as the vault's risk source: what it knows about the circumstances of a
write (the writing session's recent risk, this host's load, the raised system floor).

Registered with :func:`carevault.web.vault.context.register_risk_source` at
``SecuritycoreConfig.ready()``, so the vault asks through a small interface and never imports
the security layer (which itself writes through the vault).
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from carevault.crypto import CryptoError, Suite
from carevault.web.vault.context import IDLE, HostLoad

from . import state
from .models import SecurityEvent
from .runtime import runtime

logger = logging.getLogger(__name__)

# How far back a session's risk counts for its writes: the window the detectors look at.
RISK_WINDOW = dt.timedelta(minutes=15)


class SecurityRiskSource:
    """:class:`carevault.web.vault.context.RiskSource` over the security layer's state."""

    def session_risk(self, session: str) -> float:
        """The highest risk the detectors gave this session's events in the last window (0 for
        a session they have not seen)."""
        found = SecurityEvent.objects.filter(
            session=session, at__gte=timezone.now() - RISK_WINDOW
        ).aggregate(top=Max("risk"))["top"]
        return float(found) if found is not None else 0.0

    def host_load(self) -> HostLoad:
        """CPU %, request latency p95 (ms) and requests per second from the last host sample
        this process took (idle before the first one: a command or a worker takes none)."""
        try:
            sample = runtime().last_host
        except Exception:  # telemetry is a hint, never a reason to fail a write
            return IDLE
        if sample is None:
            return IDLE
        interval = max(1, int(settings.SECURITY_TELEMETRY_SECONDS))
        return HostLoad(
            cpu_percent=sample.cpu * 100.0,
            latency_ms=sample.latency_p95_ms,
            traffic_rps=sample.requests / interval,
        )

    def system_floor(self) -> Suite | None:
        """The floor the response layer raised, if one is in force."""
        floor = state.current_floor()
        if floor is None:
            return None
        try:
            return Suite.parse(floor.suite)
        except CryptoError:
            # A floor naming no suite we know: the strongest protects more than any guess.
            logger.warning("the raised floor names an unknown suite; using the strongest")
            return Suite.HYBRID_X25519_AES_256_GCM
