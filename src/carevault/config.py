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


# New files and directories are the owner's alone: the data directory holds the database (PHI,
# even if sealed), wrapped keys, uploads, backups' inputs. SQLite gives its -wal/-shm files the
# database file's permissions, so they follow.
OWNER_ONLY_UMASK = 0o077


def secure_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The data directory, created owner-only (0700) if missing, and this process's umask set so
    that everything it creates there is owner-only too. What is directly inside it and readable
    by others (an older install's 0644 database, say) is tightened; :func:`tighten_tree` does
    the whole tree (``carevault migrate`` and ``demo`` run it)."""
    os.umask(OWNER_ONLY_UMASK)
    path = data_dir(environ)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    _tighten(path)
    for child in path.iterdir():
        _tighten(child)
    return path


def tighten_tree(root: Path) -> int:
    """Remove group and other access from everything under ``root``; how many were changed."""
    changed = 0
    for directory, dirs, files in os.walk(root):
        for name in (directory, *(os.path.join(directory, n) for n in (*dirs, *files))):
            changed += _tighten(Path(name))
    return changed


def _tighten(path: Path) -> int:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return 0
    if path.is_symlink() or not mode & 0o077:
        return 0
    try:
        os.chmod(path, mode & 0o700)
    except PermissionError:
        # Not ours (a mounted volume owned by another account): leave it, never fail to start;
        # the operator's check (`find ... -perm /077`, docs/operations.md) shows it.
        return 0
    return 1


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
