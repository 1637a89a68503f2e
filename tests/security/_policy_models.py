"""Shared by the policy tests: a cost model with this machine's shape and a small fitted policy.

The costs are fixed (per call, per byte) at roughly what `carevault security train-policy`
measured here (docs/policy.md), so labels never depend on how busy the test machine is; the
measurement itself is tested in test_policy_costs.py.
"""

from __future__ import annotations

import functools

from carevault.crypto import Suite
from carevault.security.policy_costs import CostModel
from carevault.security.policy_training import Fitted, fit

COSTS = CostModel.from_lines(
    {
        Suite.AES_128_GCM: (10e-6, 0.85e-9),
        Suite.AES_192_GCM: (10e-6, 0.85e-9),
        Suite.AES_256_GCM: (10e-6, 0.85e-9),
        Suite.HYBRID_X25519_AES_256_GCM: (165e-6, 1.95e-9),
        Suite.HYBRID_P256_AES_256_GCM: (240e-6, 2.05e-9),
        Suite.RSA_3072_OAEP_AES_256_GCM: (2100e-6, 2.8e-9),
    }
)


@functools.cache
def small_fitted() -> Fitted:
    """A policy fitted on 6,000 inputs with 8 trees: seconds to build, same code path as the
    real one."""
    return fit(seed=3, samples=6_000, held_out=2_000, n_estimators=8, costs=COSTS)
