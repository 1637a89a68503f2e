"""Key-encryption keys: the master key that wraps every data key (envelope encryption).

Data keys (one keyring per patient, the server's asymmetric keys, clinicians' signing keys) are
stored only *wrapped* by a key-encryption key (KEK). The KEK is either a local
:class:`MasterKey` (a keyring of AES-256-GCM versions, from a file or the environment) or a
:class:`KmsKey` that asks an external key-management service, so the master never leaves it.

Rotating the master key only rewraps the data keys (:func:`rewrap_all`), which is fast and
resumable: blobs already under the newest master version are skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .canonical import Context, context_bytes
from .envelope import parse_header
from .errors import ConfigurationError, DecryptionError
from .keyring import Keyring, KeyState
from .suites import Suite


class KeyEncryptionKey(Protocol):
    """Wraps and unwraps key material, bound to a context (e.g. which keyring it is)."""

    @property
    def description(self) -> str: ...

    def wrap(self, secret: bytes, context: Context) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: Context) -> bytes: ...

    def is_current(self, wrapped: bytes) -> bool:
        """False when ``wrapped`` should be rewrapped under the current master version."""
        ...


class MasterKey:
    """A local KEK: a keyring of AES-256-GCM versions (nothing weaker wraps keys)."""

    def __init__(self, keyring: Keyring) -> None:
        for info in keyring.versions():
            if info.state is not KeyState.DESTROYED and info.suite is not Suite.AES_256_GCM:
                raise ConfigurationError(
                    f"master key versions must be AES-256-GCM, v{info.version} is {info.suite}"
                )
        self.keyring = keyring

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(Keyring.generate("master", Suite.AES_256_GCM))

    @property
    def description(self) -> str:
        return f"local master key v{self.keyring.primary.version}"

    def wrap(self, secret: bytes, context: Context) -> bytes:
        return self.keyring.encrypt(secret, context)

    def unwrap(self, wrapped: bytes, context: Context) -> bytes:
        return self.keyring.decrypt(wrapped, context)

    def is_current(self, wrapped: bytes) -> bool:
        return not self.keyring.needs_reencrypt(wrapped)

    def rotate(self) -> int:
        return self.keyring.rotate().version

    def __repr__(self) -> str:
        return f"<MasterKey {self.description}>"


class KmsClient(Protocol):
    """The two calls CareVault needs from a KMS (AWS KMS, GCP KMS, Vault transit, an HSM)."""

    def encrypt(self, key_uri: str, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, key_uri: str, ciphertext: bytes, aad: bytes) -> bytes: ...


_KMS_MAGIC = b"CVK\x01"
_KMS_URI_LEN = struct.Struct(">H")


class KmsKey:
    """A KEK held by a KMS: the master key never enters this process.

    The wrapped blob records which KMS key wrapped it, so moving to a new KMS key is a rewrap
    like a local rotation; rotation *inside* one KMS key is the KMS's own business.
    """

    def __init__(self, client: KmsClient, key_uri: str) -> None:
        if not key_uri:
            raise ConfigurationError("a KMS key needs a key URI")
        self.client = client
        self.key_uri = key_uri

    @property
    def description(self) -> str:
        return f"KMS key {self.key_uri}"

    def wrap(self, secret: bytes, context: Context) -> bytes:
        uri = self.key_uri.encode()
        header = _KMS_MAGIC + _KMS_URI_LEN.pack(len(uri)) + uri
        return header + self.client.encrypt(self.key_uri, secret, header + context_bytes(context))

    def unwrap(self, wrapped: bytes, context: Context) -> bytes:
        uri, body_at = _parse_kms_blob(wrapped)
        try:
            return self.client.decrypt(
                uri, wrapped[body_at:], wrapped[:body_at] + context_bytes(context)
            )
        except DecryptionError:
            raise
        except Exception:  # whatever the KMS client raised, callers see one opaque failure
            raise DecryptionError() from None

    def is_current(self, wrapped: bytes) -> bool:
        return _parse_kms_blob(wrapped)[0] == self.key_uri


def _parse_kms_blob(wrapped: bytes) -> tuple[str, int]:
    if not wrapped.startswith(_KMS_MAGIC) or len(wrapped) < len(_KMS_MAGIC) + 2:
        raise DecryptionError()
    (length,) = _KMS_URI_LEN.unpack_from(wrapped, len(_KMS_MAGIC))
    start = len(_KMS_MAGIC) + 2
    try:
        return wrapped[start : start + length].decode(), start + length
    except UnicodeDecodeError:
        raise DecryptionError() from None


# -- wrapped keyrings ---------------------------------------------------------------------------


def _keyring_context(name: str) -> dict[str, str]:
    return {"purpose": "wrapped-keyring", "keyring": name}


def wrap_keyring(keyring: Keyring, kek: KeyEncryptionKey) -> bytes:
    """The keyring, sealed by the KEK and bound to its name: this is what a database stores."""
    return kek.wrap(keyring.to_json(), _keyring_context(keyring.name))


def unwrap_keyring(wrapped: bytes, kek: KeyEncryptionKey, name: str) -> Keyring:
    """The keyring called ``name``; a blob of another keyring fails like any bad ciphertext."""
    ring = Keyring.from_json(kek.unwrap(wrapped, _keyring_context(name)))
    if ring.name != name:
        raise DecryptionError()
    return ring


def keyring_context(name: str) -> dict[str, str]:
    """The context a wrapped keyring called ``name`` is bound to."""
    return _keyring_context(name)


def rewrap(
    wrapped: bytes, kek: KeyEncryptionKey, name: str, context: Context | None = None
) -> bytes:
    """The same secret, wrapped under the KEK's current version (a keyring unless ``context``
    names another kind of wrapped secret)."""
    if kek.is_current(wrapped):
        return wrapped
    bound = _keyring_context(name) if context is None else context
    return kek.wrap(kek.unwrap(wrapped, bound), bound)


class WrappedKeyStore(Protocol):
    """Where wrapped keyrings (and other wrapped secrets) live: a database table, a directory."""

    def names(self) -> Iterable[str]: ...

    def context(self, name: str) -> Context:
        """The context the blob called ``name`` is bound to (a keyring's, for keyrings)."""
        ...

    def get(self, name: str) -> bytes: ...

    def compare_and_swap(self, name: str, expected: bytes, new: bytes) -> bool:
        """Replace ``expected`` by ``new`` atomically; False if someone changed it meanwhile."""
        ...


@dataclass
class RewrapReport:
    rewrapped: list[str] = field(default_factory=list)
    already_current: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    changed_meanwhile: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed and not self.changed_meanwhile


def rewrap_all(store: WrappedKeyStore, kek: KeyEncryptionKey) -> RewrapReport:
    """Rewrap every keyring under the KEK's current version. Safe to stop and run again."""
    report = RewrapReport()
    for name in list(store.names()):
        blob = store.get(name)
        try:
            if kek.is_current(blob):
                report.already_current.append(name)
                continue
            new = rewrap(blob, kek, name, store.context(name))
        except DecryptionError:
            report.failed.append(name)
            continue
        if store.compare_and_swap(name, blob, new):
            report.rewrapped.append(name)
        else:
            report.changed_meanwhile.append(name)
    return report


def master_versions_in_use(store: WrappedKeyStore) -> set[int]:
    """Which local master versions still wrap something (a version in use must not be retired)."""
    used: set[int] = set()
    for name in store.names():
        try:
            used.add(parse_header(store.get(name)).key_id)
        except DecryptionError:
            continue
    return used
