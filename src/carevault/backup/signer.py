"""The service's backup signing key: Ed25519, wrapped by the master key in ``keys/wrapped``.

It lives in the directory key store with the other wrapped keys, so ``carevault keys rotate``
rewraps it, and it is copied into every backup. A backup is trusted when its header names this
key: the one of the server verifying it, or, on a new machine, the one inside the backup that
unwraps with the master key.
"""

from __future__ import annotations

from pathlib import Path

from carevault.crypto import CryptoError, KeyEncryptionKey, SecretBytes, SigningKey
from carevault.crypto.kek import keyring_context
from carevault.crypto.keystore import DirectoryKeyStore

from .archive import BackupError

NAME = "backup:signing"


def load(store: DirectoryKeyStore, kek: KeyEncryptionKey, *, create: bool) -> SigningKey | None:
    """The signing key in ``store``; created when asked and missing, else None when missing."""
    context = keyring_context(NAME)
    if NAME not in store:
        if not create:
            return None
        key = SigningKey.generate("Ed25519")
        store.put(NAME, kek.wrap(key.private_bytes().expose(), context))
        return key
    try:
        secret = SecretBytes(kek.unwrap(store.get(NAME), context))
        return SigningKey.from_private_bytes("Ed25519", secret)
    except CryptoError:
        raise BackupError(
            "the backup signing key does not open with this master key (keys/wrapped)"
        ) from None


def from_blob(blob: bytes, kek: KeyEncryptionKey) -> SigningKey:
    """The signing key from its wrapped form (as found inside a backup)."""
    try:
        secret = SecretBytes(kek.unwrap(blob, keyring_context(NAME)))
        return SigningKey.from_private_bytes("Ed25519", secret)
    except CryptoError:
        raise BackupError("the backup's signing key does not open with this master key") from None


def load_from(directory: Path, kek: KeyEncryptionKey) -> SigningKey | None:
    return load(DirectoryKeyStore(directory), kek, create=False)
