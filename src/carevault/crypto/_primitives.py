"""The only module that touches ``cryptography.hazmat``.

Everything above it uses the small, hard-to-misuse API in the rest of :mod:`carevault.crypto`
(pyca's "recipes vs hazmat" split). Nonces are generated here and nowhere else, except for the
STREAM construction whose nonces are derived from a random per-file prefix and a chunk counter.
Every failure of an authenticated decryption becomes the one opaque :class:`DecryptionError`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Literal, NoReturn

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from .errors import ConfigurationError, DecryptionError, InvalidSignatureError, WeakKeyError

GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16
AES_KEY_BYTES = (16, 24, 32)
RSA_MIN_BITS = 3072
RSA_PUBLIC_EXPONENT = 65537

KemName = Literal["X25519", "P-256"]
SignatureAlgorithm = Literal["Ed25519", "ECDSA-P256-SHA256", "RSA-PSS-3072-SHA256"]


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf_sha256(ikm: bytes, *, length: int, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


# --- AES-GCM ----------------------------------------------------------------------------------


class AesGcm:
    """AES-GCM under one key, with random 96-bit nonces (or derived ones for STREAM)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) not in AES_KEY_BYTES:
            raise WeakKeyError(f"AES-GCM needs a 16, 24 or 32-byte key, got {len(key)} bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """nonce || ciphertext || tag, under a fresh random nonce."""
        nonce = os.urandom(GCM_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def seal_after(self, prefix: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """``prefix || nonce || ciphertext || tag`` in one allocation (the envelope hot path)."""
        nonce = os.urandom(GCM_NONCE_BYTES)
        return prefix + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open_after(self, data: bytes | memoryview, offset: int, aad: bytes) -> bytes:
        """Open ``nonce || ciphertext || tag`` found at ``offset`` in ``data``."""
        if len(data) < offset + GCM_NONCE_BYTES + GCM_TAG_BYTES:
            raise DecryptionError()
        view = memoryview(data)
        body = offset + GCM_NONCE_BYTES
        try:
            return self._aead.decrypt(view[offset:body], view[body:], aad)
        except InvalidTag:
            raise DecryptionError() from None

    def open(self, sealed: bytes | memoryview, aad: bytes) -> bytes:
        if len(sealed) < GCM_NONCE_BYTES + GCM_TAG_BYTES:
            raise DecryptionError()
        view = memoryview(sealed)
        try:
            return self._aead.decrypt(view[:GCM_NONCE_BYTES], view[GCM_NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError() from None

    # STREAM: the nonce is prefix || counter || last-flag, unique per chunk by construction.
    def seal_into(self, nonce: bytes, plaintext: memoryview, aad: bytes, out: memoryview) -> None:
        self._aead.encrypt_into(nonce, plaintext, aad, out)

    def open_into(self, nonce: bytes, sealed: memoryview, aad: bytes, out: memoryview) -> None:
        try:
            self._aead.decrypt_into(nonce, sealed, aad, out)
        except InvalidTag:
            raise DecryptionError() from None


def aes_gcm_test_only_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt with a caller-chosen nonce. Exists only to check official test vectors."""
    return AESGCM(key).encrypt(nonce, plaintext, aad)


# --- Hybrid ECC + AES: HPKE (RFC 9180), DHKEM + HKDF-SHA256 + AES-256-GCM ----------------------

_HPKE_KEMS = {"X25519": hpke.KEM.X25519, "P-256": hpke.KEM.P256}


def _hpke_suite(kem: KemName) -> hpke.Suite:
    return hpke.Suite(_HPKE_KEMS[kem], hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


class HpkePrivateKey:
    """A recipient key for hybrid encryption; holds both halves."""

    __slots__ = ("_key", "kem")

    def __init__(self, kem: KemName, key: x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey):
        self.kem = kem
        self._key = key

    @classmethod
    def generate(cls, kem: KemName) -> HpkePrivateKey:
        if kem == "X25519":
            return cls(kem, x25519.X25519PrivateKey.generate())
        return cls(kem, ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_bytes(cls, kem: KemName, data: bytes) -> HpkePrivateKey:
        try:
            if kem == "X25519":
                return cls(kem, x25519.X25519PrivateKey.from_private_bytes(data))
            key = serialization.load_der_private_key(data, password=None)
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigurationError(f"not a valid {kem} private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ConfigurationError("not a P-256 private key")
        return cls(kem, key)

    def private_bytes(self) -> bytes:
        if isinstance(self._key, x25519.X25519PrivateKey):
            return self._key.private_bytes_raw()
        return self._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_key(self) -> HpkePublicKey:
        return HpkePublicKey(self.kem, self._key.public_key())

    def open(self, sealed: bytes | memoryview, info: bytes) -> bytes:
        try:
            return _hpke_suite(self.kem).decrypt(bytes(sealed), self._key, info=info)
        except Exception:  # HPKE raises several types (InvalidTag, ValueError); all look alike.
            raise DecryptionError() from None


class HpkePublicKey:
    __slots__ = ("_key", "kem")

    def __init__(self, kem: KemName, key: x25519.X25519PublicKey | ec.EllipticCurvePublicKey):
        self.kem = kem
        self._key = key

    @classmethod
    def from_bytes(cls, kem: KemName, data: bytes) -> HpkePublicKey:
        try:
            if kem == "X25519":
                return cls(kem, x25519.X25519PublicKey.from_public_bytes(data))
            return cls(kem, ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data))
        except ValueError:
            raise ConfigurationError(f"not a valid {kem} public key") from None

    def public_bytes(self) -> bytes:
        if isinstance(self._key, x25519.X25519PublicKey):
            return self._key.public_bytes_raw()
        return self._key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def seal(self, plaintext: bytes, info: bytes) -> bytes:
        return _hpke_suite(self.kem).encrypt(plaintext, self._key, info=info)


# --- RSA-3072-OAEP wrapping a fresh AES-256-GCM key --------------------------------------------

_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _check_rsa_size(bits: int) -> None:
    if bits < RSA_MIN_BITS:
        raise WeakKeyError(f"RSA keys below {RSA_MIN_BITS} bits are refused (got {bits})")


class RsaPrivateKey:
    __slots__ = ("_key",)

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        _check_rsa_size(key.key_size)
        self._key = key

    @classmethod
    def generate(cls, bits: int = RSA_MIN_BITS) -> RsaPrivateKey:
        _check_rsa_size(bits)
        return cls(rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=bits))

    @classmethod
    def from_bytes(cls, data: bytes) -> RsaPrivateKey:
        try:
            key = serialization.load_der_private_key(data, password=None)
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigurationError("not a valid RSA private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError("not an RSA private key")
        return cls(key)

    @property
    def bits(self) -> int:
        return self._key.key_size

    def private_bytes(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_key(self) -> RsaPublicKey:
        return RsaPublicKey(self._key.public_key())

    def unwrap(self, wrapped: bytes | memoryview) -> bytes:
        try:
            return self._key.decrypt(bytes(wrapped), _OAEP)
        except ValueError:
            raise DecryptionError() from None


class RsaPublicKey:
    __slots__ = ("_key",)

    def __init__(self, key: rsa.RSAPublicKey) -> None:
        _check_rsa_size(key.key_size)
        self._key = key

    @classmethod
    def from_bytes(cls, data: bytes) -> RsaPublicKey:
        try:
            key = serialization.load_der_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigurationError("not a valid RSA public key") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise ConfigurationError("not an RSA public key")
        return cls(key)

    @property
    def bits(self) -> int:
        return self._key.key_size

    @property
    def wrapped_key_bytes(self) -> int:
        return (self._key.key_size + 7) // 8

    def public_bytes(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def wrap(self, key: bytes) -> bytes:
        return self._key.encrypt(key, _OAEP)


# --- Signatures --------------------------------------------------------------------------------

_PrivateSigningKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_PublicSigningKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


class PrivateSigningKey:
    __slots__ = ("_key", "algorithm")

    def __init__(self, algorithm: SignatureAlgorithm, key: _PrivateSigningKey) -> None:
        _check_signing_key(algorithm, key)
        self.algorithm = algorithm
        self._key = key

    @classmethod
    def generate(cls, algorithm: SignatureAlgorithm) -> PrivateSigningKey:
        key: _PrivateSigningKey
        if algorithm == "Ed25519":
            key = ed25519.Ed25519PrivateKey.generate()
        elif algorithm == "ECDSA-P256-SHA256":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=3072)
        return cls(algorithm, key)

    @classmethod
    def from_bytes(cls, algorithm: SignatureAlgorithm, data: bytes) -> PrivateSigningKey:
        try:
            key = serialization.load_der_private_key(data, password=None)
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigurationError(f"not a valid {algorithm} private key") from None
        if not isinstance(key, _PrivateSigningKey):
            raise ConfigurationError(f"not a {algorithm} private key")
        return cls(algorithm, key)

    def private_bytes(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_key(self) -> PublicSigningKey:
        return PublicSigningKey(self.algorithm, self._key.public_key())

    def sign(self, message: bytes) -> bytes:
        key = self._key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(message)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(message, ec.ECDSA(hashes.SHA256()))
        return key.sign(message, _PSS, hashes.SHA256())


class PublicSigningKey:
    __slots__ = ("_key", "algorithm")

    def __init__(self, algorithm: SignatureAlgorithm, key: _PublicSigningKey) -> None:
        _check_signing_key(algorithm, key)
        self.algorithm = algorithm
        self._key = key

    @classmethod
    def from_bytes(cls, algorithm: SignatureAlgorithm, data: bytes) -> PublicSigningKey:
        try:
            key = serialization.load_der_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigurationError(f"not a valid {algorithm} public key") from None
        if not isinstance(key, _PublicSigningKey):
            raise ConfigurationError(f"not a {algorithm} public key")
        return cls(algorithm, key)

    def public_bytes(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, message: bytes, signature: bytes) -> None:
        key = self._key
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            else:
                key.verify(signature, message, _PSS, hashes.SHA256())
        except InvalidSignature:
            raise InvalidSignatureError() from None


def _check_signing_key(
    algorithm: SignatureAlgorithm, key: _PrivateSigningKey | _PublicSigningKey
) -> None:
    if algorithm == "Ed25519":
        ok = isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey)
    elif algorithm == "ECDSA-P256-SHA256":
        ok = (
            isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)
            and key.curve.name == "secp256r1"
        )
    elif algorithm == "RSA-PSS-3072-SHA256":
        ok = isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey)
        if ok:
            _check_rsa_size(key.key_size)  # type: ignore[union-attr]
    else:
        raise ConfigurationError(f"unknown signature algorithm {algorithm!r}")
    if not ok:
        raise ConfigurationError(f"the key is not a {algorithm} key")


# --- TLS (a self-signed certificate for `carevault serve --tls`) --------------------------------


def self_signed_tls_certificate(hostnames: list[str], days: int) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for a P-256 key, valid for ``hostnames``."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# --- TOTP (RFC 6238: HMAC-SHA-1, the algorithm every authenticator app implements) -----------


def totp_generate(key: bytes, at: float, *, digits: int, time_step: int) -> str:
    """The code for the time step containing ``at`` (seconds since the epoch)."""
    # HMAC-SHA-1 is what RFC 6238 and every authenticator app use; collisions in SHA-1 do not
    # weaken HMAC-SHA-1 as a PRF.
    return TOTP(key, digits, hashes.SHA1(), time_step).generate(at).decode()  # noqa: S303


def totp_matching_step(
    key: bytes, code: str, at: float, *, digits: int, time_step: int, window: int
) -> int | None:
    """The latest time step within ``window`` steps of ``at`` whose code is ``code``, or None.

    Every candidate step is computed and compared in constant time, whichever matches, so the
    time taken says nothing about which step (if any) the code belongs to.
    """
    totp = TOTP(key, digits, hashes.SHA1(), time_step)  # noqa: S303 - see totp_generate
    current = int(at // time_step)
    given = code.encode()
    matched: int | None = None
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(totp.generate(step * time_step), given):
            matched = step
    return matched


# --- ECDH on P-256 (login packets: the browser's WebCrypto speaks it) ---------------------------

P256_POINT_BYTES = 65  # uncompressed X9.62: 0x04 || x (32) || y (32)


class EcdhP256PrivateKey:
    """One side of an ECDH key agreement on P-256; the shared secret is the x coordinate
    (32 bytes), as in WebCrypto's ``deriveBits`` and SEC 1."""

    __slots__ = ("_key",)

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if key.curve.name != "secp256r1":
            raise ConfigurationError("not a P-256 private key")
        self._key = key

    @classmethod
    def generate(cls) -> EcdhP256PrivateKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_bytes(cls, data: bytes) -> EcdhP256PrivateKey:
        """From PKCS#8 DER (what :meth:`private_bytes` returns)."""
        try:
            key = serialization.load_der_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ConfigurationError("not a valid P-256 private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigurationError("not a P-256 private key")
        return cls(key)

    def private_bytes(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_bytes(self) -> bytes:
        """The public point, uncompressed X9.62 (what WebCrypto's ``exportKey("raw")`` gives)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def exchange(self, peer_point: bytes) -> bytes:
        """The shared secret with the holder of ``peer_point`` (uncompressed X9.62).

        The point comes from the network: one that is compressed, malformed or not on the curve
        (an invalid-curve attack) raises :class:`ConfigurationError` before any use of the key.
        """
        if len(peer_point) != P256_POINT_BYTES or peer_point[0] != 0x04:
            raise ConfigurationError("not an uncompressed P-256 point")
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), peer_point)
            return self._key.exchange(ec.ECDH(), peer)
        except ValueError:
            raise ConfigurationError("not a valid P-256 point") from None

    def __repr__(self) -> str:
        return "<EcdhP256PrivateKey, redacted>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("private keys cannot be pickled")
