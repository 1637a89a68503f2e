"""A real encryption policy whose learned table proposes one suite everywhere, so tests can see
the floors and the re-encryption job at work (the policy's guards still apply in full)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from carevault.crypto import Suite
from carevault.security.policy import ALLOWED_SUITES, GRID_SHAPE, EncryptionPolicy
from carevault.web.vault import adaptive, service


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
