"""Shamir k-of-n splitting of the master key, so no single officer can unlock it alone.

pycryptodome's :mod:`Crypto.Protocol.SecretSharing` does the arithmetic (GF(2^128), 16-byte
blocks); this module splits a secret of any length block by block with the same participant
indexes, and adds what a person handling paper shares needs: a set id (so shares of different
splits are not mixed), a checksum per share (so a typo is caught at once, naming the share), and
a key-check value that tells whether the recovered secret is the real one. With fewer than k
shares, interpolation yields an unrelated value, which the key-check value rejects.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from Crypto.Protocol.SecretSharing import Shamir

from ._primitives import constant_time_equal, hmac_sha256, sha256
from .errors import ShareError
from .secret import SecretBytes

_BLOCK = 16
_PREFIX = "cvshare1"
_KCV_INFO = b"carevault-shamir-kcv/1"
MAX_SHARES = 255


@dataclass(frozen=True)
class Share:
    set_id: str
    threshold: int
    total: int
    index: int
    kcv: str
    payload: bytes

    def to_text(self) -> str:
        body = base64.b32encode(self.payload).decode().rstrip("=")
        core = (
            f"{_PREFIX}-{self.set_id}-{self.threshold}of{self.total}-{self.index}-{self.kcv}-{body}"
        )
        return f"{core}-{sha256(core.encode())[:3].hex()}"

    @classmethod
    def from_text(cls, text: str) -> Share:
        cleaned = "".join(text.split())
        parts = cleaned.split("-")
        if len(parts) != 7 or parts[0] != _PREFIX:
            raise ShareError("not a CareVault share (expected cvshare1-...)")
        core, checksum = "-".join(parts[:6]), parts[6]
        if sha256(core.encode())[:3].hex() != checksum.lower():
            raise ShareError(f"share {parts[3]} of set {parts[1]} has a typo (checksum mismatch)")
        try:
            k_text, n_text = parts[2].split("of")
            body = parts[5].upper()
            payload = base64.b32decode(body + "=" * (-len(body) % 8))
            return cls(parts[1], int(k_text), int(n_text), int(parts[3]), parts[4], payload)
        except (ValueError, binascii.Error):
            raise ShareError("share is malformed") from None

    def __repr__(self) -> str:
        return f"<Share {self.index} of {self.threshold}-of-{self.total} set {self.set_id}>"


def _kcv(secret: bytes) -> str:
    return hmac_sha256(secret, _KCV_INFO)[:6].hex()


def split_secret(secret: SecretBytes, threshold: int, total: int) -> list[Share]:
    """``total`` shares, any ``threshold`` of which recover ``secret``."""
    if not 2 <= threshold <= total <= MAX_SHARES:
        raise ShareError(f"need 2 <= k <= n <= {MAX_SHARES}, got k={threshold}, n={total}")
    raw = secret.expose()
    if not raw:
        raise ShareError("cannot split an empty secret")
    padded = struct.pack(">I", len(raw)) + raw
    padded += b"\x00" * (-len(padded) % _BLOCK)
    payloads: dict[int, bytearray] = {i: bytearray() for i in range(1, total + 1)}
    for start in range(0, len(padded), _BLOCK):
        for index, part in Shamir.split(threshold, total, padded[start : start + _BLOCK]):
            payloads[index] += part
    set_id = secrets.token_hex(4)
    kcv = _kcv(raw)
    return [Share(set_id, threshold, total, i, kcv, bytes(b)) for i, b in payloads.items()]


def recover_secret(shares: Iterable[Share | str]) -> SecretBytes:
    """The secret, from at least k shares of one split; :class:`ShareError` otherwise."""
    parsed = [s if isinstance(s, Share) else Share.from_text(s) for s in shares]
    if not parsed:
        raise ShareError("no shares given")
    first = parsed[0]
    for share in parsed:
        if (share.set_id, share.threshold, share.total, share.kcv) != (
            first.set_id,
            first.threshold,
            first.total,
            first.kcv,
        ):
            raise ShareError("the shares come from different splits")
        if (
            not share.payload
            or len(share.payload) != len(first.payload)
            or len(share.payload) % _BLOCK
        ):
            raise ShareError(f"share {share.index} is damaged (wrong length)")
    unique = {s.index: s for s in parsed}
    if len(unique) < first.threshold:
        raise ShareError(
            f"{len(unique)} distinct share(s) given; this split needs {first.threshold}"
        )
    chosen = list(unique.values())[: first.threshold]
    padded = bytearray()
    for start in range(0, len(first.payload), _BLOCK):
        padded += Shamir.combine([(s.index, s.payload[start : start + _BLOCK]) for s in chosen])
    (length,) = struct.unpack_from(">I", padded)
    raw = bytes(padded[4 : 4 + length])
    if length > len(padded) - 4 or not constant_time_equal(_kcv(raw).encode(), first.kcv.encode()):
        raise ShareError("the shares do not recover the secret (a share is wrong or forged)")
    return SecretBytes(raw)
