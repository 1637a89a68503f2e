"""The security layer as the vault's risk source (issue 15): registered when the app is ready,
it reports a session's recent risk, this process's host load and the raised floor."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from carevault.crypto import Suite
from carevault.security.telemetry import HostSample
from carevault.web.securitycore import runtime, state, write_risk
from carevault.web.securitycore.models import SecurityEvent, SecurityState
from carevault.web.securitycore.write_risk import RISK_WINDOW, SecurityRiskSource
from carevault.web.vault import context
from carevault.web.vault.context import IDLE, HostLoad

SESSION = "b" * 32


@pytest.fixture
def source() -> SecurityRiskSource:
    return SecurityRiskSource()


def event(session: str, risk: float | None, age: dt.timedelta = dt.timedelta()) -> None:
    SecurityEvent.objects.create(
        at=timezone.now() - age, kind="request", session=session, risk=risk
    )


def test_the_security_layer_is_the_registered_risk_source():
    assert isinstance(context.risk_source(), SecurityRiskSource)


def test_a_sessions_risk_is_the_highest_of_its_recent_events(db, source):
    event(SESSION, 0.3)
    event(SESSION, 0.7)
    event(SESSION, None)  # not scored yet
    event(SESSION, 0.99, age=RISK_WINDOW + dt.timedelta(minutes=1))  # too old to count
    event("c" * 32, 0.95)  # another session
    assert source.session_risk(SESSION) == pytest.approx(0.7)


def test_a_session_the_detectors_have_not_seen_has_no_risk(db, source):
    assert source.session_risk(SESSION) == 0.0


def test_the_host_load_is_the_last_sample_this_process_took(source, settings):
    settings.SECURITY_TELEMETRY_SECONDS = 10
    assert source.host_load() == IDLE  # before the first sample
    runtime.runtime().last_host = HostSample(
        at=0.0, cpu=0.5, memory=0.4, net_mbps=1.0, latency_p95_ms=120.0, requests=30
    )
    assert source.host_load() == HostLoad(cpu_percent=50.0, latency_ms=120.0, traffic_rps=3.0)


def test_a_host_load_that_cannot_be_had_is_idle(source, monkeypatch):
    def broken() -> runtime.Runtime:
        raise RuntimeError("no scorer")

    monkeypatch.setattr(write_risk, "runtime", broken)
    assert source.host_load() == IDLE


def test_the_system_floor_is_the_raised_one_while_in_force(db, source):
    assert source.system_floor() is None
    state.raise_floor("RSA-3072-OAEP-AES-256-GCM", seconds=600, reason="incident")
    assert source.system_floor() is Suite.RSA_3072_OAEP_AES_256_GCM
    state.lower_floor()
    assert source.system_floor() is None


def test_a_floor_naming_an_unknown_suite_is_the_strongest(db, source):
    SecurityState.objects.update_or_create(
        id=1,
        defaults={
            "floor_suite": "ROT13",
            "floor_until": timezone.now() + dt.timedelta(minutes=5),
        },
    )
    assert source.system_floor() is Suite.HYBRID_X25519_AES_256_GCM
