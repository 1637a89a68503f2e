"""Key material for one key version of one suite, and how it is (de)serialised for wrapping.

Each class seals and opens the *body* of an envelope; the header and associated data are the
envelope module's business. Material objects cannot be printed or pickled.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, NoReturn

from ._primitives import (
    AesGcm,
    HpkePrivateKey,
    HpkePublicKey,
    KemName,
    RsaPrivateKey,
    RsaPublicKey,
    random_bytes,
)
from .errors import ConfigurationError, DecryptionError, KeyStateError, WeakKeyError
from .secret import SecretBytes
from .suites import Suite, SuiteKind

_KEMS: dict[Suite, KemName] = {
    Suite.HYBRID_X25519_AES_256_GCM: "X25519",
    Suite.HYBRID_P256_AES_256_GCM: "P-256",
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ConfigurationError(f"{what} must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ConfigurationError(f"{what} is not valid base64") from None


class KeyMaterial:
    """The secret (and/or public) half of one key version."""

    suite: Suite

    @property
    def can_decrypt(self) -> bool:
        raise NotImplementedError

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        raise NotImplementedError

    def open(self, body: memoryview, aad: bytes) -> bytes:
        raise NotImplementedError

    def seal_envelope(self, header: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """``header || body``: the whole envelope."""
        return header + self.seal(plaintext, aad)

    def open_envelope(self, envelope: bytes | memoryview, header_bytes: int, aad: bytes) -> bytes:
        """Open the body that follows a ``header_bytes``-long header."""
        return self.open(memoryview(envelope)[header_bytes:], aad)

    @property
    def envelope_sealer(self) -> Callable[[bytes, bytes, bytes], bytes]:
        """``seal_envelope`` as one callable, the shortest path there is (for hot loops)."""
        return self.seal_envelope

    @property
    def envelope_opener(self) -> Callable[[bytes | memoryview, int, bytes], bytes]:
        """``open_envelope`` as one callable, the shortest path there is (for hot loops)."""
        return self.open_envelope

    def export(self) -> dict[str, str]:
        """JSON-ready material. Holds secrets: only ever passed straight to a key wrapper."""
        raise NotImplementedError

    def public(self) -> KeyMaterial:
        """The part that can encrypt but not decrypt (for symmetric suites: refused)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.suite.label}, redacted>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("key material cannot be pickled")

    @staticmethod
    def generate(suite: Suite) -> KeyMaterial:
        if suite.kind is SuiteKind.SYMMETRIC:
            return SymmetricMaterial(suite, SecretBytes.random(suite.aes_key_bytes))
        if suite.kind is SuiteKind.HYBRID:
            return HybridMaterial(suite, private=HpkePrivateKey.generate(_KEMS[suite]))
        return RsaMaterial(suite, private=RsaPrivateKey.generate())

    @staticmethod
    def load(suite: Suite, data: dict[str, Any]) -> KeyMaterial:
        if suite.kind is SuiteKind.SYMMETRIC:
            return SymmetricMaterial(suite, SecretBytes(_unb64(data.get("k"), "key")))
        if suite.kind is SuiteKind.HYBRID:
            kem = _KEMS[suite]
            if "sk" in data:
                return HybridMaterial(
                    suite, private=HpkePrivateKey.from_bytes(kem, _unb64(data["sk"], "key"))
                )
            return HybridMaterial(
                suite, public=HpkePublicKey.from_bytes(kem, _unb64(data.get("pk"), "key"))
            )
        if "sk" in data:
            return RsaMaterial(suite, private=RsaPrivateKey.from_bytes(_unb64(data["sk"], "key")))
        return RsaMaterial(suite, public=RsaPublicKey.from_bytes(_unb64(data.get("pk"), "key")))


class SymmetricMaterial(KeyMaterial):
    __slots__ = ("_aead", "_secret", "suite")

    def __init__(self, suite: Suite, secret: SecretBytes) -> None:
        if len(secret) != suite.aes_key_bytes:
            raise WeakKeyError(
                f"{suite.label} needs a {suite.aes_key_bytes}-byte key, got {len(secret)} bytes"
            )
        self.suite = suite
        self._secret = secret
        self._aead = AesGcm(secret.expose())

    @property
    def can_decrypt(self) -> bool:
        return True

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        return self._aead.seal(plaintext, aad)

    def open(self, body: memoryview, aad: bytes) -> bytes:
        return self._aead.open(body, aad)

    # Small fields are the common case: one allocation for the whole envelope, no extra copy.
    def seal_envelope(self, header: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return self._aead.seal_after(header, plaintext, aad)

    def open_envelope(self, envelope: bytes | memoryview, header_bytes: int, aad: bytes) -> bytes:
        return self._aead.open_after(envelope, header_bytes, aad)

    # Straight to the cached AEAD object's methods: one Python call less per field.
    @property
    def envelope_sealer(self) -> Callable[[bytes, bytes, bytes], bytes]:
        return self._aead.seal_after

    @property
    def envelope_opener(self) -> Callable[[bytes | memoryview, int, bytes], bytes]:
        return self._aead.open_after

    def export(self) -> dict[str, str]:
        return {"k": _b64(self._secret.expose())}

    def public(self) -> KeyMaterial:
        raise KeyStateError(f"{self.suite.label} is symmetric: it has no public half")


class HybridMaterial(KeyMaterial):
    """HPKE (RFC 9180) base mode: DHKEM(X25519 or P-256, HKDF-SHA256), AES-256-GCM."""

    __slots__ = ("_private", "_public", "suite")

    def __init__(
        self,
        suite: Suite,
        *,
        private: HpkePrivateKey | None = None,
        public: HpkePublicKey | None = None,
    ) -> None:
        self.suite = suite
        self._private = private
        self._public = public if public is not None else private.public_key()  # type: ignore[union-attr]

    @property
    def can_decrypt(self) -> bool:
        return self._private is not None

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        # HPKE's single-shot API binds context through `info`, which enters the key schedule:
        # a ciphertext opened with any other header or context derives a different key and fails.
        return self._public.seal(plaintext, info=aad)

    def open(self, body: memoryview, aad: bytes) -> bytes:
        if self._private is None:
            raise DecryptionError()
        return self._private.open(body, info=aad)

    def export(self) -> dict[str, str]:
        if self._private is not None:
            return {"sk": _b64(self._private.private_bytes())}
        return {"pk": _b64(self._public.public_bytes())}

    def public(self) -> KeyMaterial:
        return HybridMaterial(self.suite, public=self._public)


class RsaMaterial(KeyMaterial):
    """RSA-3072-OAEP(SHA-256) wraps a fresh AES-256-GCM key per message."""

    __slots__ = ("_private", "_public", "suite")

    def __init__(
        self,
        suite: Suite,
        *,
        private: RsaPrivateKey | None = None,
        public: RsaPublicKey | None = None,
    ) -> None:
        self.suite = suite
        self._private = private
        self._public = public if public is not None else private.public_key()  # type: ignore[union-attr]

    @property
    def can_decrypt(self) -> bool:
        return self._private is not None

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        content_key = random_bytes(32)
        wrapped = self._public.wrap(content_key)
        return wrapped + AesGcm(content_key).seal(plaintext, aad)

    def open(self, body: memoryview, aad: bytes) -> bytes:
        if self._private is None:
            raise DecryptionError()
        size = self._public.wrapped_key_bytes
        if len(body) < size:
            raise DecryptionError()
        content_key = self._private.unwrap(body[:size])
        if len(content_key) != 32:
            raise DecryptionError()
        return AesGcm(content_key).open(body[size:], aad)

    def export(self) -> dict[str, str]:
        if self._private is not None:
            return {"sk": _b64(self._private.private_bytes())}
        return {"pk": _b64(self._public.public_bytes())}

    def public(self) -> KeyMaterial:
        return RsaMaterial(self.suite, public=self._public)
