"""Encrypted login packets: the password is sealed to the server before it leaves the client.

A login never travels as a readable form post. The client fetches a single-use *challenge*,
encrypts ``{username, password, nonce, ts}`` to the server's long-term login key, and posts the
*packet*. The same scheme runs in the browser (WebCrypto, ``web/static/js/login.js``) and in
Python (:func:`seal_login_packet`, used by :mod:`carevault.client`, the tests and the attack lab).

Scheme ``ECDH-P256/HKDF-SHA256/AES-256-GCM`` (version 1)::

    server:    long-term P-256 key pair (sk_S, pk_S); key_id = hex(SHA-256(pk_S)[:8])
    challenge: {"cid":        base64url(16 random bytes),
                "nonce":      base64url(16 random bytes),
                "issued":     unix seconds (server clock),
                "expires":    issued + 120,
                "server_key": base64url(pk_S, uncompressed X9.62 point, 65 bytes),
                "key_id":     key_id,
                "alg":        "ECDH-P256/HKDF-SHA256/AES-256-GCM"}
    client:    ephemeral P-256 key pair (esk, epk)
               shared = ECDH(esk, pk_S)                       (x coordinate, 32 bytes)
               key    = HKDF-SHA256(shared, salt = nonce bytes,
                                    info = b"carevault-login/1" || cid bytes, length 32)
               iv     = 12 random bytes
               pt     = canonical JSON {"nonce", "password", "ts", "username"}
                        (sorted keys, no white space, UTF-8; ts in unix seconds)
               aad    = b"carevault-login/1|" || cid bytes
               ct     = AES-256-GCM(key, iv, pt, aad)          (ciphertext || 16-byte tag)
    packet:    {"cid", "epk", "iv", "ct"}, every value base64url without padding

The server looks the challenge up by ``cid`` and consumes it (single use), then
:func:`open_login_packet` checks, in this order: the packet is well formed (exact fields,
canonical base64url, a 65-byte uncompressed point on the curve, a 12-byte iv, a bounded
ciphertext); its cid is the challenge's; the challenge has not expired; the ciphertext opens
under the key derived from the challenge's nonce and cid; the plaintext is a JSON object with
exactly the four members of the right types; the nonce inside is the challenge's; ``ts`` is within
:data:`MAX_CLOCK_SKEW` of the server's clock and not after the expiry.

Every malformed, tampered or undecryptable packet raises the one opaque
:class:`~carevault.crypto.errors.DecryptionError`. A packet that authenticates but belongs to
another challenge or another moment raises :class:`~carevault.crypto.errors.RejectedPacketError`
with a reason for the audit log; servers answer both the same way.

The cid and nonce enter the key derivation and the associated data, so a packet made for one
challenge does not open under another; the nonce is also inside the plaintext, so "a packet for
challenge A carrying challenge B's nonce" is caught even by a client that mixes the two.

``issued`` lets a client with a wrong clock stamp ``ts`` in server time (``issued`` plus the time
elapsed since the challenge arrived), as the browser and the Python client do.

What this adds on top of TLS, and what it does not, is in docs/crypto.md ("Login packets").
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn

from ._primitives import (
    GCM_NONCE_BYTES,
    GCM_TAG_BYTES,
    P256_POINT_BYTES,
    AesGcm,
    EcdhP256PrivateKey,
    constant_time_equal,
    hkdf_sha256,
    random_bytes,
    sha256,
)
from .canonical import canonical_bytes
from .errors import ConfigurationError, CryptoError, DecryptionError, RejectedPacketError
from .secret import SecretBytes

__all__ = [
    "ALGORITHM",
    "CHALLENGE_TTL",
    "MAX_CLOCK_SKEW",
    "Challenge",
    "LoginCredentials",
    "LoginKey",
    "LoginPacket",
    "b64url",
    "form_aad",
    "make_challenge",
    "open_form_packet",
    "open_login_packet",
    "seal_form_packet",
    "seal_login_packet",
    "seal_payload",
]

ALGORITHM = "ECDH-P256/HKDF-SHA256/AES-256-GCM"
DOMAIN = b"carevault-login/1"
AAD_PREFIX = DOMAIN + b"|"
CHALLENGE_TTL = 120
MAX_CLOCK_SKEW = 120

CID_BYTES = 16
NONCE_BYTES = 16
IV_BYTES = GCM_NONCE_BYTES
POINT_BYTES = P256_POINT_BYTES
# A username (150 characters) and a long passphrase fit many times over; anything bigger is junk.
MAX_PLAINTEXT_BYTES = 4096
MAX_CIPHERTEXT_BYTES = MAX_PLAINTEXT_BYTES + GCM_TAG_BYTES
# The whole JSON packet, before it is parsed.
MAX_PACKET_BYTES = 8192

PACKET_FIELDS = frozenset({"cid", "epk", "iv", "ct"})
CREDENTIAL_FIELDS = frozenset({"username", "password", "nonce", "ts"})

# Form packets (passwords in registration, enrolment, reset and new-user forms): same scheme,
# their own domain, and the form they were made for in the associated data.
FORM_DOMAIN = b"carevault-form/1"
FORM_PAYLOAD_FIELDS = frozenset({"fields", "nonce", "ts"})
# A form's purpose is a short fixed word (register, password-reset, ...); no "|" can occur in it,
# so the associated data below splits one way only.
_PURPOSE = re.compile(r"[a-z][a-z0-9-]{0,39}")
MAX_BINDING_BYTES = 1024
MAX_FORM_FIELDS = 4

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


# -- encoding -------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 4648 section 5), as every field of the scheme travels."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64url(value: object, *, size: int | None = None, max_size: int = 0) -> bytes | None:
    """The bytes of a canonical base64url text, or None.

    Canonical means exactly what :func:`b64url` produces: no padding, no white space, no other
    alphabet, no stray bits in the last character. A lenient decoder would let several texts
    stand for one packet, and a flipped character could then go unnoticed.
    """
    limit = size if size is not None else max_size
    if not isinstance(value, str) or len(value) > (limit * 4 + 2) // 3:
        return None
    if not _BASE64URL.fullmatch(value):
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
    if b64url(raw) != value or (size is not None and len(raw) != size):
        return None
    return raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # JSON parsers disagree on duplicate members (first wins, last wins): refuse them outright.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate member")
        result[key] = value
    return result


def _refuse(text: str) -> NoReturn:
    raise ValueError(f"{text} is not accepted")


def _strict_json(data: bytes | str) -> Any:
    """JSON with no duplicate members, no floats, no NaN or Infinity."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return json.loads(
        text, object_pairs_hook=_no_duplicates, parse_float=_refuse, parse_constant=_refuse
    )


def _derive_key(shared: bytes, nonce: bytes, cid: bytes, *, domain: bytes = DOMAIN) -> AesGcm:
    return AesGcm(hkdf_sha256(shared, length=32, salt=nonce, info=domain + cid))


def form_aad(purpose: str, binding: str, cid: bytes) -> bytes:
    """The associated data of a form packet: ``carevault-form/1|purpose|cid|binding``.

    ``purpose`` is a short word without "|" and ``cid`` has a fixed length, so the bytes split
    one way only; ``binding`` (the form's path) goes last and may hold any text. A packet sealed
    for the registration form does not open as a password reset, nor for another reset link.
    """
    if not _PURPOSE.fullmatch(purpose):
        raise ConfigurationError(f"not a form purpose: {purpose!r}")
    try:
        bound = binding.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError("a form binding is text") from None
    if len(bound) > MAX_BINDING_BYTES:
        raise ConfigurationError("a form binding is limited to 1024 bytes")
    return FORM_DOMAIN + b"|" + purpose.encode("ascii") + b"|" + cid + b"|" + bound


# -- the server's key -----------------------------------------------------------------------------


class LoginKey:
    """The server's long-term login key (P-256). It cannot be printed, pickled or copied; its
    private half leaves only through :meth:`private_bytes`, to be wrapped by the master key."""

    __slots__ = ("_key", "_public", "key_id")

    def __init__(self, key: EcdhP256PrivateKey) -> None:
        self._key = key
        self._public = key.public_bytes()
        self.key_id = sha256(self._public)[:8].hex()

    @classmethod
    def generate(cls) -> LoginKey:
        return cls(EcdhP256PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, secret: SecretBytes) -> LoginKey:
        """From PKCS#8 DER (:meth:`private_bytes`); raises ConfigurationError if it is not one."""
        return cls(EcdhP256PrivateKey.from_bytes(secret.expose()))

    def private_bytes(self) -> SecretBytes:
        """PKCS#8 DER, to be wrapped by a key-encryption key before it is stored."""
        return SecretBytes(self._key.private_bytes())

    def public_bytes(self) -> bytes:
        """The public point, uncompressed X9.62 (65 bytes); safe to publish."""
        return self._public

    def _exchange(self, peer_point: bytes) -> bytes:
        return self._key.exchange(peer_point)

    def __repr__(self) -> str:
        return f"<LoginKey P-256 {self.key_id}, redacted>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("login keys cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("login keys cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("login keys are not copied")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        raise TypeError("login keys are not copied")


# -- challenge, packet, credentials ---------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """What the client needs to seal one login packet. All of it is public."""

    cid: str
    nonce: str
    issued: int
    expires: int
    server_key: str
    key_id: str
    alg: str = ALGORITHM

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Challenge:
        """A challenge as a server sent it; ConfigurationError if it is not one we can use."""
        if not isinstance(data, Mapping):
            raise ConfigurationError("a login challenge is a JSON object")
        if data.get("alg") != ALGORITHM:
            raise ConfigurationError(f"unsupported login packet algorithm {data.get('alg')!r}")
        issued, expires, key_id = data.get("issued"), data.get("expires"), data.get("key_id")
        if (
            _unb64url(data.get("cid"), size=CID_BYTES) is None
            or _unb64url(data.get("nonce"), size=NONCE_BYTES) is None
            or _unb64url(data.get("server_key"), size=POINT_BYTES) is None
            or type(issued) is not int
            or type(expires) is not int
            or not isinstance(key_id, str)
        ):
            raise ConfigurationError("not a login challenge")
        return cls(
            cid=data["cid"],
            nonce=data["nonce"],
            issued=issued,
            expires=expires,
            server_key=data["server_key"],
            key_id=key_id,
        )


def make_challenge(login_key: LoginKey, *, now: float, ttl: int = CHALLENGE_TTL) -> Challenge:
    """A fresh challenge under ``login_key``, valid from ``now`` for ``ttl`` seconds.

    The caller stores ``cid -> (nonce, expires)`` and must let each cid be used once.
    """
    issued = int(now)
    return Challenge(
        cid=b64url(random_bytes(CID_BYTES)),
        nonce=b64url(random_bytes(NONCE_BYTES)),
        issued=issued,
        expires=issued + ttl,
        server_key=b64url(login_key.public_bytes()),
        key_id=login_key.key_id,
    )


@dataclass(frozen=True)
class LoginPacket:
    """A parsed packet: its fields decoded, nothing decrypted yet."""

    cid: str
    epk: bytes
    iv: bytes
    ct: bytes = field(repr=False)

    @classmethod
    def parse(cls, data: bytes | str | Mapping[str, Any]) -> LoginPacket:
        """From the JSON a client posted (or the decoded object); DecryptionError if malformed."""
        if isinstance(data, bytes | str):
            if len(data) > MAX_PACKET_BYTES:
                raise DecryptionError()
            try:
                data = _strict_json(data)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise DecryptionError() from None
        if not isinstance(data, Mapping) or set(data) != PACKET_FIELDS:
            raise DecryptionError()
        cid = data["cid"]
        epk = _unb64url(data["epk"], size=POINT_BYTES)
        iv = _unb64url(data["iv"], size=IV_BYTES)
        ct = _unb64url(data["ct"], max_size=MAX_CIPHERTEXT_BYTES)
        if _unb64url(cid, size=CID_BYTES) is None or epk is None or iv is None or ct is None:
            raise DecryptionError()
        if len(ct) <= GCM_TAG_BYTES:
            raise DecryptionError()
        return cls(cid=cid, epk=epk, iv=iv, ct=ct)

    def to_dict(self) -> dict[str, str]:
        return {
            "cid": self.cid,
            "epk": b64url(self.epk),
            "iv": b64url(self.iv),
            "ct": b64url(self.ct),
        }


@dataclass(frozen=True)
class LoginCredentials:
    """What a packet carried. The password is never shown in a repr, and is not pickled."""

    username: str
    password: str = field(repr=False)
    nonce: str
    ts: int

    def __reduce__(self) -> NoReturn:
        raise TypeError("credentials cannot be pickled")


def _text(value: object) -> bool:
    """A string a database and a password hasher take: valid UTF-8 (no lone surrogate, which
    JSON's \\u escapes can carry) and no NUL (PostgreSQL refuses it in text)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _credentials(plaintext: bytes) -> LoginCredentials:
    try:
        data = _strict_json(plaintext)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DecryptionError() from None
    if not isinstance(data, dict) or set(data) != CREDENTIAL_FIELDS:
        raise DecryptionError()
    username, password, nonce, ts = data["username"], data["password"], data["nonce"], data["ts"]
    if type(ts) is not int or not all(_text(v) for v in (username, password, nonce)):
        raise DecryptionError()
    return LoginCredentials(username=username, password=password, nonce=nonce, ts=ts)


# -- client side ----------------------------------------------------------------------------------


def _challenge(challenge: Challenge | Mapping[str, Any]) -> Challenge:
    return challenge if isinstance(challenge, Challenge) else Challenge.from_dict(challenge)


def seal_payload(
    challenge: Challenge | Mapping[str, Any],
    payload: Mapping[str, Any] | bytes,
    *,
    form: tuple[str, str] | None = None,
) -> dict[str, str]:
    """Seal any JSON object (canonically encoded) or any bytes the way a login packet is sealed
    (or, with ``form=(purpose, binding)``, the way a form packet is sealed).

    :func:`seal_login_packet` and :func:`seal_form_packet` are the client's functions; this lower
    step exists for tests and the attack lab, which need well-sealed packets with wrong contents
    (a foreign nonce, an old timestamp, a missing member, bytes that are not JSON) to show that
    the server refuses them.
    """
    c = _challenge(challenge)
    cid = _unb64url(c.cid, size=CID_BYTES)
    nonce = _unb64url(c.nonce, size=NONCE_BYTES)
    server_point = _unb64url(c.server_key, size=POINT_BYTES)
    if cid is None or nonce is None or server_point is None:  # from_dict checked; for mypy
        raise ConfigurationError("not a login challenge")
    plaintext = payload if isinstance(payload, bytes) else canonical_bytes(dict(payload))
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise ConfigurationError(f"login credentials are limited to {MAX_PLAINTEXT_BYTES} bytes")
    ephemeral = EcdhP256PrivateKey.generate()
    if form is None:
        aead = _derive_key(ephemeral.exchange(server_point), nonce, cid)
        aad = AAD_PREFIX + cid
    else:
        aead = _derive_key(ephemeral.exchange(server_point), nonce, cid, domain=FORM_DOMAIN)
        aad = form_aad(form[0], form[1], cid)
    sealed = aead.seal(plaintext, aad)
    packet = LoginPacket(
        cid=c.cid, epk=ephemeral.public_bytes(), iv=sealed[:IV_BYTES], ct=sealed[IV_BYTES:]
    )
    return packet.to_dict()


def seal_login_packet(
    challenge: Challenge | Mapping[str, Any], username: str, password: str, now: float
) -> dict[str, str]:
    """The login packet for ``challenge`` (a :class:`Challenge` or the JSON the server sent).

    ``now`` is the timestamp in server time: ``challenge.issued`` plus the seconds elapsed since
    the challenge arrived is right even when the client's own clock is not.
    """
    c = _challenge(challenge)
    payload = {"username": username, "password": password, "nonce": c.nonce, "ts": int(now)}
    return seal_payload(c, payload)


# -- server side ----------------------------------------------------------------------------------


def open_login_packet(
    login_key: LoginKey,
    packet: LoginPacket | bytes | str | Mapping[str, Any],
    expected_nonce: str,
    cid: str,
    *,
    expires: int,
    now: float,
) -> LoginCredentials:
    """The credentials in ``packet``, made for the challenge ``(cid, expected_nonce, expires)``.

    Raises :class:`DecryptionError` for every malformed, tampered or undecryptable packet, and
    :class:`RejectedPacketError` for one that opens but carries a foreign nonce or comes too
    late (or with a timestamp too far from ``now``). Single use is the caller's part: it must
    consume the challenge before calling this.
    """
    parsed = packet if isinstance(packet, LoginPacket) else LoginPacket.parse(packet)
    cid_bytes = _unb64url(cid, size=CID_BYTES)
    nonce_bytes = _unb64url(expected_nonce, size=NONCE_BYTES)
    if cid_bytes is None or nonce_bytes is None:
        raise ConfigurationError("the stored challenge is not a valid challenge")
    if parsed.cid != cid:
        raise DecryptionError()
    if now > expires:
        raise RejectedPacketError("expired")
    try:
        shared = login_key._exchange(parsed.epk)
    except CryptoError:
        raise DecryptionError() from None
    plaintext = _derive_key(shared, nonce_bytes, cid_bytes).open(
        parsed.iv + parsed.ct, AAD_PREFIX + cid_bytes
    )
    credentials = _credentials(plaintext)
    if not constant_time_equal(credentials.nonce.encode(), expected_nonce.encode()):
        raise RejectedPacketError("foreign_nonce")
    if abs(credentials.ts - now) > MAX_CLOCK_SKEW or credentials.ts > expires:
        raise RejectedPacketError("expired")
    return credentials


# -- form packets ---------------------------------------------------------------------------------
#
# The same scheme carries the password fields of other forms (registration, enrolment, password
# reset, the officer's new-user form). Differences from a login packet:
#
#   key = HKDF-SHA256(shared, salt = nonce, info = "carevault-form/1" || cid)
#   pt  = canonical JSON {"fields": {name: text, ...}, "nonce", "ts"}
#   aad = "carevault-form/1|" || purpose || "|" || cid || "|" || binding (UTF-8)
#
# ``purpose`` names the form and ``binding`` is the path it was served at, so a packet opens only
# for the form (and the reset link) it was sealed for, and never as a login packet.


def seal_form_packet(
    challenge: Challenge | Mapping[str, Any],
    purpose: str,
    binding: str,
    fields: Mapping[str, str],
    now: float,
) -> dict[str, str]:
    """The form packet carrying ``fields`` (name -> value) for the form ``(purpose, binding)``."""
    c = _challenge(challenge)
    payload = {"fields": dict(fields), "nonce": c.nonce, "ts": int(now)}
    return seal_payload(c, payload, form=(purpose, binding))


def _form_fields(plaintext: bytes) -> tuple[dict[str, str], str, int]:
    try:
        data = _strict_json(plaintext)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DecryptionError() from None
    if not isinstance(data, dict) or set(data) != FORM_PAYLOAD_FIELDS:
        raise DecryptionError()
    fields, nonce, ts = data["fields"], data["nonce"], data["ts"]
    if type(ts) is not int or not _text(nonce) or not isinstance(fields, dict):
        raise DecryptionError()
    if len(fields) > MAX_FORM_FIELDS or not all(_text(k) and _text(v) for k, v in fields.items()):
        raise DecryptionError()
    return fields, nonce, ts


def open_form_packet(
    login_key: LoginKey,
    packet: LoginPacket | bytes | str | Mapping[str, Any],
    expected_nonce: str,
    cid: str,
    *,
    purpose: str,
    binding: str,
    expires: int,
    now: float,
) -> dict[str, str]:
    """The fields in a form packet made for the challenge ``(cid, expected_nonce, expires)`` and
    the form ``(purpose, binding)``.

    Raises exactly as :func:`open_login_packet` does: :class:`DecryptionError` for a malformed,
    tampered or undecryptable packet (a packet for another form is one: its associated data
    differs), :class:`RejectedPacketError` for a foreign nonce or a late packet. Single use is the
    caller's part, as for logins.
    """
    parsed = packet if isinstance(packet, LoginPacket) else LoginPacket.parse(packet)
    cid_bytes = _unb64url(cid, size=CID_BYTES)
    nonce_bytes = _unb64url(expected_nonce, size=NONCE_BYTES)
    if cid_bytes is None or nonce_bytes is None:
        raise ConfigurationError("the stored challenge is not a valid challenge")
    if parsed.cid != cid:
        raise DecryptionError()
    if now > expires:
        raise RejectedPacketError("expired")
    try:
        aad = form_aad(purpose, binding, cid_bytes)
        shared = login_key._exchange(parsed.epk)
    except CryptoError:  # an unusable binding (ConfigurationError) or point
        raise DecryptionError() from None
    plaintext = _derive_key(shared, nonce_bytes, cid_bytes, domain=FORM_DOMAIN).open(
        parsed.iv + parsed.ct, aad
    )
    fields, nonce, ts = _form_fields(plaintext)
    if not constant_time_equal(nonce.encode(), expected_nonce.encode()):
        raise RejectedPacketError("foreign_nonce")
    if abs(ts - now) > MAX_CLOCK_SKEW or ts > expires:
        raise RejectedPacketError("expired")
    return fields
