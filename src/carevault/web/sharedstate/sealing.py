"""Sealing values that must not sit readable in the shared store.

Most of the shared state is counters and timestamps under keyed hashes. The extraction monitor's
histories are different: they hold the (standardised) features of the cases a doctor asked
about, which is clinical data. In a process's memory that was acceptable; in Redis or a database
table it is data at rest, so it is sealed (AES-256-GCM through the crypto core's keyring, bound
to the store key it was written under) with a service keyring wrapped by the master key, like
every other server secret (``ServiceSecret``).
"""

from __future__ import annotations

import base64
import threading

from django.db import transaction

from carevault.crypto import DecryptionError, Keyring
from carevault.web.vault import service
from carevault.web.vault.models import ServiceSecret

KEYRING = "shared-state-keyring"
# The context every ServiceSecret row is wrapped under, so a master rotation rewraps it too.
_CONTEXT = {"purpose": "service-secret", "name": KEYRING}

_lock = threading.Lock()
_ring: Keyring | None = None


def _keyring() -> Keyring:
    global _ring
    with _lock:
        if _ring is not None:
            return _ring
    row = ServiceSecret.objects.filter(name=KEYRING).first()
    if row is None:
        with transaction.atomic():
            fresh = Keyring.generate(KEYRING)
            row, _ = ServiceSecret.objects.get_or_create(
                name=KEYRING, defaults={"wrapped": service.master().wrap(fresh.to_json(), _CONTEXT)}
            )
    ring = Keyring.from_json(service.unwrap_current(bytes(row.wrapped), _CONTEXT))
    with _lock:
        _ring = ring
    return ring


def reset() -> None:
    """Forget the unwrapped keyring (tests; after a master rotation)."""
    global _ring
    with _lock:
        _ring = None


def seal(plaintext: bytes, key: str) -> str:
    """``plaintext`` sealed for the store key ``key`` (text, so JSON can hold it)."""
    sealed = _keyring().encrypt(plaintext, {"purpose": "shared-state", "key": key})
    return base64.b64encode(sealed).decode()


def open_sealed(text: str, key: str) -> bytes | None:
    """The plaintext, or None when it does not authenticate (tampered, or moved to another
    key): the caller treats that as no value."""
    try:
        return _keyring().decrypt(base64.b64decode(text), {"purpose": "shared-state", "key": key})
    except (DecryptionError, ValueError):
        return None
