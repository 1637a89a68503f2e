"""Configuration from the environment (``CAREVAULT_*``), read through small typed helpers.

Dev/demo mode (the default) creates what it needs on first run inside the data directory;
production mode (``CAREVAULT_ENV=production``) refuses to start without its secrets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from carevault.crypto import KeyProviderError
from carevault.crypto.keystore import DirectoryKeyStore
from carevault.crypto.providers import EnvMasterKeyProvider, FileMasterKeyProvider

ENV_DATA_DIR = "CAREVAULT_DATA_DIR"
ENV_MODE = "CAREVAULT_ENV"
ENV_MASTER_KEY = "CAREVAULT_MASTER_KEY"
ENV_MASTER_KEY_FILE = "CAREVAULT_MASTER_KEY_FILE"


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Everything a run creates lives here (default: ``./var``, ignored by git)."""
    value = _environ(environ).get(ENV_DATA_DIR, "").strip()
    return Path(value) if value else Path.cwd() / "var"


def is_production(environ: Mapping[str, str] | None = None) -> bool:
    mode = _environ(environ).get(ENV_MODE, "development").strip().lower()
    if mode not in ("development", "production"):
        raise ValueError(f"{ENV_MODE} must be 'development' or 'production', got {mode!r}")
    return mode == "production"


def master_key_provider(
    environ: Mapping[str, str] | None = None,
) -> EnvMasterKeyProvider | FileMasterKeyProvider:
    """The configured master-key provider, most explicit first."""
    env = _environ(environ)
    if env.get(ENV_MASTER_KEY, "").strip():
        return EnvMasterKeyProvider(env, ENV_MASTER_KEY)
    if env.get(ENV_MASTER_KEY_FILE, "").strip():
        return FileMasterKeyProvider(env[ENV_MASTER_KEY_FILE].strip())
    if is_production(env):
        raise KeyProviderError(
            f"production mode needs a master key: set {ENV_MASTER_KEY} (or {ENV_MASTER_KEY_FILE})"
        )
    return FileMasterKeyProvider(data_dir(env) / "keys" / "master.json")


def key_store(environ: Mapping[str, str] | None = None) -> DirectoryKeyStore:
    return DirectoryKeyStore(data_dir(environ) / "keys" / "wrapped")
