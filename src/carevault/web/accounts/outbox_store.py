"""The encrypted outbox's files as a :class:`~carevault.crypto.kek.WrappedKeyStore`, so
``carevault keys rotate`` rewraps (and ``keys status`` counts) the messages sealed by the master
key like every other wrapped secret: retiring an old master version must never leave a message
that no longer opens. No Django here: the command line uses it before any app is set up."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from carevault.platform.files import atomic_write_bytes

SUFFIX = ".msg"


def message_context(name: str) -> dict[str, str]:
    """What a message is bound to: its file name (it cannot be passed off under another)."""
    return {"purpose": "outbox", "message": name}


class OutboxKeyStore:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.directory / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.glob(f"*{SUFFIX}"))

    def context(self, name: str) -> dict[str, str]:
        return message_context(name)

    def get(self, name: str) -> bytes:
        return (self.directory / name).read_bytes()

    def compare_and_swap(self, name: str, expected: bytes, new: bytes) -> bool:
        # Senders only ever create new names, so the lock orders rewraps among themselves.
        with self._locked():
            path = self.directory / name
            if not path.exists() or path.read_bytes() != expected:
                return False
            atomic_write_bytes(path, new)
            return True
