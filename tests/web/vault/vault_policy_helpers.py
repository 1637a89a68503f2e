"""A real encryption policy whose learned table proposes one suite everywhere, so tests can see
the floors and the re-encryption job at work (the policy's guards still apply in full); and a
risk source of the tests' own, to see what a write's context carries to the policy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pytest

from carevault.crypto import Suite
from carevault.security.policy import ALLOWED_SUITES, GRID_SHAPE, EncryptionPolicy
from carevault.web.vault import adaptive, context, service
from carevault.web.vault.context import IDLE, HostLoad, RiskSource


def table_policy(suite: Suite) -> EncryptionPolicy:
    code = ALLOWED_SUITES.index(suite)
    return EncryptionPolicy(np.full(GRID_SHAPE, code, dtype=np.uint8), info={"version": "test"})


@contextmanager
def policy_proposing(monkeypatch: pytest.MonkeyPatch, suite: Suite) -> Iterator[EncryptionPolicy]:
    chosen = table_policy(suite)
    monkeypatch.setattr(adaptive, "policy", lambda: chosen)
    service.reset_caches()
    try:
        yield chosen
    finally:
        monkeypatch.undo()


@dataclass
class FakeRiskSource:
    """A risk source that reports the same risk for every session, a fixed host load and an
    optional floor, and remembers which sessions it was asked about."""

    risk: float = 0.0
    load: HostLoad = IDLE
    floor: Suite | None = None
    asked: list[str] = field(default_factory=list)

    def session_risk(self, session: str) -> float:
        self.asked.append(session)
        return self.risk

    def host_load(self) -> HostLoad:
        return self.load

    def system_floor(self) -> Suite | None:
        return self.floor


@contextmanager
def risk_source_registered(source: RiskSource) -> Iterator[RiskSource]:
    """``source`` as the process's risk source for the block; the one before it afterwards."""
    before = context.risk_source()
    context.register_risk_source(source)
    try:
        yield source
    finally:
        context.register_risk_source(before)
