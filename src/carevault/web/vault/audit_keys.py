"""The vault's keys for the audit log (registered with it in apps.py; see audit/keys.py)."""

from __future__ import annotations

from carevault.crypto import KeyEncryptionKey, SecretBytes

from . import service


class VaultAuditKeys:
    def chain_secret(self) -> SecretBytes:
        return service.service_secret("audit-chain")

    def master(self) -> KeyEncryptionKey:
        return service.master()
