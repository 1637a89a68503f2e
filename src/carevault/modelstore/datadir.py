"""The sealed-model store of a data directory (``CAREVAULT_DATA_DIR/models``): what every
command, the server and the workers open, keyed by the configured master key."""

from __future__ import annotations

from pathlib import Path

from carevault import config
from carevault.crypto import FileMasterKeyProvider
from carevault.crypto.kek import KeyEncryptionKey
from carevault.crypto.providers import CurrentMasterKey

from .anchor import Anchor
from .store import ModelStore


def model_store(data_dir: str | Path) -> ModelStore:
    """The sealed-model store of a data directory, keyed by the configured master key."""
    provider = config.master_key_provider()
    if isinstance(provider, FileMasterKeyProvider) and not provider.exists():
        # Dev/demo mode: the first command that needs the master key creates it (as the web
        # layer's key vault does); production mode never gets here without one.
        provider.create()
    # Looked up again when the key file changes: a server's store outlives `keys rotate`.
    kek: KeyEncryptionKey = (
        CurrentMasterKey(provider)
        if isinstance(provider, FileMasterKeyProvider)
        else provider.load()
    )
    # The high-water marks are anchored in the data directory's signed checkpoint file too.
    return ModelStore(Path(data_dir) / "models", kek, anchor=Anchor(data_dir, kek))
