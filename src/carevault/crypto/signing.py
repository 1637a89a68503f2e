"""Signatures over records: Ed25519, ECDSA P-256 and RSA-PSS-3072, all SHA-256 based.

A record (a prescription, a lab report) is signed over its canonical encoding with a *purpose*
prefix, so a signature made for one kind of record never verifies as another kind. A
:class:`Signature` carries its algorithm and the signer's key id. :meth:`VerifyKey.verify`
raises :class:`InvalidSignatureError` and returns nothing: there is no bool to forget to check.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass
from typing import Any, NoReturn

from ._primitives import PrivateSigningKey, PublicSigningKey, sha256
from .canonical import canonical_bytes
from .errors import ConfigurationError, InvalidSignatureError
from .secret import SecretBytes

_DOMAIN = b"carevault-signature/1\x00"
_TEXT_PREFIX = "cvsig1"


class SignatureAlgorithm(enum.Enum):
    ED25519 = "Ed25519"
    ECDSA_P256_SHA256 = "ECDSA-P256-SHA256"
    RSA_PSS_3072_SHA256 = "RSA-PSS-3072-SHA256"

    @classmethod
    def parse(cls, name: str | SignatureAlgorithm) -> SignatureAlgorithm:
        if isinstance(name, SignatureAlgorithm):
            return name
        for alg in cls:
            if alg.value.upper() == name.strip().upper():
                return alg
        known = ", ".join(a.value for a in cls)
        raise ConfigurationError(f"unknown signature algorithm {name!r}; known: {known}")


def _message(purpose: str, record: Any) -> bytes:
    if not purpose or "\x00" in purpose:
        raise ConfigurationError("a signature purpose must be a non-empty name without NUL")
    return _DOMAIN + purpose.encode() + b"\x00" + canonical_bytes(record)


def _key_id(public_der: bytes) -> str:
    return sha256(public_der)[:8].hex()


@dataclass(frozen=True)
class Signature:
    algorithm: SignatureAlgorithm
    key_id: str
    value: bytes

    def to_text(self) -> str:
        value = base64.urlsafe_b64encode(self.value).decode().rstrip("=")
        return f"{_TEXT_PREFIX}.{self.algorithm.value}.{self.key_id}.{value}"

    @classmethod
    def from_text(cls, text: str) -> Signature:
        """Parse a stored signature; a malformed one fails verification, like a forged one."""
        try:
            prefix, alg, key_id, value = text.split(".")
            if prefix != _TEXT_PREFIX:
                raise ValueError
            raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
            if not raw:
                raise ValueError
            return cls(SignatureAlgorithm.parse(alg), key_id, raw)
        except (ValueError, binascii.Error, ConfigurationError, AttributeError):
            raise InvalidSignatureError() from None


class VerifyKey:
    __slots__ = ("_key", "algorithm", "key_id")

    def __init__(self, algorithm: SignatureAlgorithm, key: PublicSigningKey) -> None:
        self.algorithm = algorithm
        self._key = key
        self.key_id = _key_id(key.public_bytes())

    @classmethod
    def from_bytes(cls, algorithm: SignatureAlgorithm | str, public_der: bytes) -> VerifyKey:
        alg = SignatureAlgorithm.parse(algorithm)
        return cls(alg, PublicSigningKey.from_bytes(alg.value, public_der))

    def public_bytes(self) -> bytes:
        """SubjectPublicKeyInfo DER; safe to store and publish."""
        return self._key.public_bytes()

    def verify(self, record: Any, signature: Signature, *, purpose: str) -> None:
        """Return if ``signature`` is ours over ``record`` for ``purpose``; raise otherwise."""
        if signature.algorithm is not self.algorithm or signature.key_id != self.key_id:
            raise InvalidSignatureError()
        self._key.verify(_message(purpose, record), signature.value)

    def __repr__(self) -> str:
        return f"<VerifyKey {self.algorithm.value} {self.key_id}>"


class SigningKey:
    __slots__ = ("_key", "algorithm", "verify_key")

    def __init__(self, algorithm: SignatureAlgorithm, key: PrivateSigningKey) -> None:
        self.algorithm = algorithm
        self._key = key
        self.verify_key = VerifyKey(algorithm, key.public_key())

    @classmethod
    def generate(
        cls, algorithm: SignatureAlgorithm | str = SignatureAlgorithm.ED25519
    ) -> SigningKey:
        alg = SignatureAlgorithm.parse(algorithm)
        return cls(alg, PrivateSigningKey.generate(alg.value))

    @classmethod
    def from_private_bytes(
        cls, algorithm: SignatureAlgorithm | str, secret: SecretBytes
    ) -> SigningKey:
        alg = SignatureAlgorithm.parse(algorithm)
        return cls(alg, PrivateSigningKey.from_bytes(alg.value, secret.expose()))

    @property
    def key_id(self) -> str:
        return self.verify_key.key_id

    def private_bytes(self) -> SecretBytes:
        """PKCS#8 DER, to be wrapped by a key-encryption key before it is stored."""
        return SecretBytes(self._key.private_bytes())

    def sign(self, record: Any, *, purpose: str) -> Signature:
        return Signature(self.algorithm, self.key_id, self._key.sign(_message(purpose, record)))

    def __repr__(self) -> str:
        return f"<SigningKey {self.algorithm.value} {self.key_id}, redacted>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("signing keys cannot be pickled")
