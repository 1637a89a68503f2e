"""The self-describing ciphertext format (Tink / Vault style).

Layout of an envelope, version 1::

    "CV" | format version (1 byte) | suite id (1 byte) | key id (4 bytes, big endian) | body

The eight header bytes are authenticated: the associated data of the AEAD is the header followed
by the canonical encoding of the *context* (e.g. table, column, row, patient). A ciphertext that
is copied to another row or patient, or whose header is edited to name another suite or key,
fails to decrypt with the one opaque :class:`DecryptionError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import DecryptionError
from .suites import Suite

MAGIC = b"CV"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">2sBBI")
HEADER_BYTES = _HEADER.size
MAX_KEY_ID = 2**32 - 1


@dataclass(frozen=True)
class Header:
    format_version: int
    suite: Suite
    key_id: int

    def to_bytes(self) -> bytes:
        return header_bytes(self.suite, self.key_id)


def parse_header(envelope: bytes | memoryview) -> Header:
    """The header of an envelope; :class:`DecryptionError` if it is not one of ours.

    Safe to call on untrusted input (the security layer reads suite ids and key ids from uploads
    with it); a parsed header is *not* yet authenticated.
    """
    if len(envelope) < HEADER_BYTES:
        raise DecryptionError()
    magic, version, suite_id, key_id = _HEADER.unpack_from(envelope)
    suite = Suite.from_id(suite_id)
    if magic != MAGIC or version != FORMAT_VERSION or suite is None:
        raise DecryptionError()
    return Header(version, suite, key_id)


def header_bytes(suite: Suite, key_id: int) -> bytes:
    return _HEADER.pack(MAGIC, FORMAT_VERSION, suite.suite_id, key_id)


def key_id_of(envelope: bytes | memoryview) -> int:
    """The key id an envelope names (unauthenticated; :class:`DecryptionError` if too short)."""
    if len(envelope) < HEADER_BYTES:
        raise DecryptionError()
    return int.from_bytes(envelope[4:HEADER_BYTES], "big")
