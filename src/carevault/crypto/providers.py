"""Where the master key comes from: a file, the environment, or a KMS.

* :class:`FileMasterKeyProvider` keeps the master keyring in a file readable by its owner only
  (dev/demo mode creates it on first run in the data directory, never in the repository).
* :class:`EnvMasterKeyProvider` reads ``CAREVAULT_MASTER_KEY``: ``1:<base64>,2:<base64>``, the
  last version listed is primary (a bare ``<base64>`` is version 1). It is read-only: rotating
  means adding a version to the variable.
* :class:`KmsMasterKeyProvider` hands out a :class:`KmsKey`; the key never leaves the KMS.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from carevault.platform.files import atomic_write_bytes

from .canonical import Context
from .errors import ConfigurationError, DecryptionError, KeyProviderError, WeakKeyError
from .kek import KeyEncryptionKey, KmsClient, KmsKey, MasterKey
from .keyring import Keyring

MASTER_FILE_FORMAT = "carevault-master-key/1"


class MasterKeyProvider(Protocol):
    @property
    def description(self) -> str: ...

    def load(self) -> KeyEncryptionKey: ...


class FileMasterKeyProvider:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def description(self) -> str:
        return f"file {self.path}"

    def exists(self) -> bool:
        return self.path.exists()

    def create(self) -> MasterKey:
        """A new master key, written only if none exists (an existing one is never replaced)."""
        if self.path.exists():
            raise KeyProviderError(f"a master key already exists at {self.path}; not replacing it")
        master = MasterKey.generate()
        self.save(master)
        return master

    def load(self) -> MasterKey:
        try:
            mode = self.path.stat().st_mode
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise KeyProviderError(
                f"no master key at {self.path}: run `carevault keys init` or set "
                "CAREVAULT_MASTER_KEY"
            ) from None
        except OSError as exc:
            raise KeyProviderError(
                f"cannot read the master key at {self.path}: {exc.strerror}"
            ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Like ssh with a private key: a key others can read is a key others may have copied.
            raise KeyProviderError(
                f"the master key file {self.path} is accessible to other users; chmod 600 it"
            )
        try:
            doc = json.loads(raw)
            if doc.get("format") != MASTER_FILE_FORMAT:
                raise KeyProviderError(f"{self.path} is not a CareVault master key file")
            return MasterKey(Keyring.from_json(json.dumps(doc["keyring"])))
        except (ValueError, KeyError, AttributeError, TypeError):
            raise KeyProviderError(
                f"{self.path} is not a valid CareVault master key file"
            ) from None
        except KeyProviderError:
            raise
        except ConfigurationError as exc:
            raise KeyProviderError(f"{self.path}: {exc}") from None

    def save(self, master: MasterKey) -> None:
        doc = {"format": MASTER_FILE_FORMAT, "keyring": json.loads(master.keyring.to_json())}
        atomic_write_bytes(self.path, json.dumps(doc, indent=1).encode(), mode=0o600)


class EnvMasterKeyProvider:
    def __init__(
        self, environ: Mapping[str, str] | None = None, variable: str = "CAREVAULT_MASTER_KEY"
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.variable = variable

    @property
    def description(self) -> str:
        return f"environment variable {self.variable}"

    def is_set(self) -> bool:
        return bool(self.environ.get(self.variable, "").strip())

    def load(self) -> MasterKey:
        value = self.environ.get(self.variable, "").strip()
        if not value:
            raise KeyProviderError(f"{self.variable} is not set")
        versions: list[tuple[int, bytes]] = []
        for position, item in enumerate(value.split(","), start=1):
            number_text, _, key_text = item.strip().rpartition(":")
            try:
                number = int(number_text) if number_text else position
                key = base64.b64decode(key_text, validate=True)
            except (ValueError, binascii.Error):
                raise KeyProviderError(
                    f"{self.variable}: item {position} is not <version>:<base64 key>"
                ) from None
            if len(key) != 32:
                raise WeakKeyError(
                    f"{self.variable}: version {number} must be a 32-byte AES-256 key, "
                    f"got {len(key)} bytes"
                )
            versions.append((number, key))
        numbers = [n for n, _ in versions]
        if len(set(numbers)) != len(numbers) or min(numbers) < 1:
            raise KeyProviderError(f"{self.variable}: versions must be distinct positive numbers")
        doc = {
            "format": 1,
            "name": "master",
            "nonce_budget": 2**32,
            "min_decrypt_version": 1,
            "versions": [
                {
                    "version": number,
                    "suite": "AES-256-GCM",
                    "state": "primary" if i == len(versions) - 1 else "decrypt-only",
                    "created_at": "",
                    "encryptions": 0,
                    "material": {"k": base64.b64encode(key).decode()},
                }
                for i, (number, key) in enumerate(versions)
            ],
        }
        return MasterKey(Keyring.from_json(json.dumps(doc)))

    @staticmethod
    def new_value() -> str:
        """A fresh value for the variable (version 1): what an operator puts in a secret store."""
        return "1:" + base64.b64encode(os.urandom(32)).decode()


class KmsMasterKeyProvider:
    def __init__(self, client: KmsClient, key_uri: str) -> None:
        self.key = KmsKey(client, key_uri)

    @property
    def description(self) -> str:
        return self.key.description

    def load(self) -> KmsKey:
        return self.key


class CurrentMasterKey:
    """The master key of a file, looked up again whenever the file changes (issue 13).

    For holders of a KEK that live long (a server's sealed-model store): after
    ``carevault keys rotate`` they unwrap what was rewrapped under the new version and wrap under
    it, without a restart. A blob that does not unwrap is retried once after reading the file
    again, so a stale copy of the key is never mistaken for tampering.
    """

    def __init__(self, provider: FileMasterKeyProvider) -> None:
        self.provider = provider
        self._stamp: tuple[int, int, int] | None = None
        self._key: MasterKey | None = None

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = self.provider.path.stat()
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def current(self, *, reload: bool = False) -> MasterKey:
        stamp = self._file_stamp()
        if reload or self._key is None or stamp != self._stamp:
            self._key, self._stamp = self.provider.load(), stamp
        return self._key

    @property
    def description(self) -> str:
        return self.current().description

    def wrap(self, secret: bytes, context: Context) -> bytes:
        return self.current().wrap(secret, context)

    def unwrap(self, wrapped: bytes, context: Context) -> bytes:
        try:
            return self.current().unwrap(wrapped, context)
        except DecryptionError:
            return self.current(reload=True).unwrap(wrapped, context)

    def is_current(self, wrapped: bytes) -> bool:
        return self.current().is_current(wrapped)
