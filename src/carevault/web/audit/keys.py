"""The keys the audit log is kept with: the HMAC key of its chain and the key-encryption key
that signs its checkpoints outside the database.

They live in the vault, which sits above the log (the vault's own key jobs are audited, and a
record that fails to decrypt is reported here). So the log does not import the vault: the vault
registers its :class:`AuditKeys` at ``AppConfig.ready()``, before any request or command runs.
"""

from __future__ import annotations

from typing import Protocol

from django.core.exceptions import ImproperlyConfigured

from carevault.crypto import KeyEncryptionKey, SecretBytes


class AuditKeys(Protocol):
    def chain_secret(self) -> SecretBytes:
        """The HMAC key that links each entry to the one before it."""
        ...

    def master(self) -> KeyEncryptionKey:
        """The key that signs the checkpoints kept outside the database."""
        ...


_keys: AuditKeys | None = None


def register(keys: AuditKeys) -> None:
    global _keys
    _keys = keys


def keys() -> AuditKeys:
    if _keys is None:
        # Only a process without the vault app can get here: a configuration error, not a state
        # to write an unkeyed (forgeable) entry in.
        raise ImproperlyConfigured("the audit log has no keys: the vault app is not installed")
    return _keys
