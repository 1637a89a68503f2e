"""Listing backups in a directory and keeping only the newest N.

Only complete backups count: files named ``*.cvbackup`` whose header and trailer are whole.
Half-written temporary files (``.*.part``) and anything else in the directory are left alone.
Ordering is by the creation time signed into each header, not by file times that a copy resets.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from carevault.crypto import DecryptionError
from carevault.crypto.envelope import key_id_of

from .archive import SUFFIX, BackupError, read_layout


@dataclass(frozen=True)
class Listed:
    path: Path
    backup_id: str
    created_at: str
    database: str
    bytes: int
    master_version: int | None  # the master version that wraps the backup's key

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "backup_id": self.backup_id,
            "created_at": self.created_at,
            "database": self.database,
            "bytes": self.bytes,
            "master_version": self.master_version,
        }


def wrapping_version(header: dict[str, object]) -> int | None:
    """Which master version wraps the backup's key (read from the header, not authenticated)."""
    try:
        wrapped = base64.b64decode(str(header["wrapped_key"]))
        return key_id_of(wrapped) if wrapped.startswith(b"CV") else None
    except (KeyError, ValueError, DecryptionError):
        return None


def list_backups(directory: Path) -> tuple[list[Listed], list[Path]]:
    """(whole backups, newest first; files named like backups that are not whole)."""
    found: list[Listed] = []
    broken: list[Path] = []
    if not directory.is_dir():
        return found, broken
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            header = read_layout(path).header
        except BackupError:
            broken.append(path)
            continue
        found.append(
            Listed(
                path,
                str(header.get("backup_id", "")),
                str(header.get("created_at", "")),
                str(header.get("database", "")),
                path.stat().st_size,
                wrapping_version(header),
            )
        )
    found.sort(key=lambda b: (b.created_at, b.path.name), reverse=True)
    return found, broken


def apply_keep(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` whole backups; returns what was deleted."""
    if keep < 1:
        raise BackupError("--keep must be at least 1")
    found, _broken = list_backups(directory)
    removed = []
    for old in found[keep:]:
        os.unlink(old.path)
        removed.append(old.path)
    return removed
