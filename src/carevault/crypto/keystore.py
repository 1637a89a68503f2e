"""A :class:`~carevault.crypto.kek.WrappedKeyStore` in a directory: one file per wrapped keyring.

The database-backed store of the web application implements the same protocol; this one serves
the command line and single-machine deployments (e.g. the server's own asymmetric keyrings).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from carevault.platform.files import atomic_write_bytes

from .errors import ConfigurationError
from .kek import keyring_context

_SUFFIX = ".wrapped"


def key_file_name(name: str) -> str:
    """The file that holds the key called ``name`` in a :class:`DirectoryKeyStore`."""
    # Names such as "patient:42" are not portable file names; base32 them reversibly.
    return base64.b32encode(name.encode()).decode().rstrip("=").lower() + _SUFFIX


def _name_of(file_name: str) -> str:
    stem = file_name[: -len(_SUFFIX)].upper()
    return base64.b32decode(stem + "=" * (-len(stem) % 8)).decode()


class DirectoryKeyStore:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.directory / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def names(self) -> list[str]:
        if not self.directory.exists():
            return []
        return sorted(_name_of(p.name) for p in self.directory.glob(f"*{_SUFFIX}"))

    def context(self, name: str) -> dict[str, str]:
        return keyring_context(name)

    def __contains__(self, name: str) -> bool:
        return (self.directory / key_file_name(name)).exists()

    def get(self, name: str) -> bytes:
        try:
            return (self.directory / key_file_name(name)).read_bytes()
        except FileNotFoundError:
            raise ConfigurationError(f"no wrapped keyring called {name!r}") from None

    def put(self, name: str, wrapped: bytes) -> None:
        with self._locked():
            atomic_write_bytes(self.directory / key_file_name(name), wrapped)

    def compare_and_swap(self, name: str, expected: bytes, new: bytes) -> bool:
        with self._locked():
            path = self.directory / key_file_name(name)
            if not path.exists() or path.read_bytes() != expected:
                return False
            atomic_write_bytes(path, new)
            return True
