"""Chunked AEAD for large files (lab reports, images) in constant memory.

The construction is STREAM (Hoang, Reyhanitabar, Rogaway, Vizár 2015), as in Tink's streaming
AEAD and age: each file gets a fresh random AES-GCM file key, sealed by the keyring like any
field (so it carries the keyring's suite and key id and is bound to the caller's context). Chunk
*i* is sealed with the nonce ``prefix(7) || i(4) || last(1)`` and the file header as associated
data. A dropped, duplicated or reordered chunk fails its tag (wrong counter), a truncated file
lacks a chunk sealed with ``last = 1``, and bytes after the last chunk are rejected.

Layout::

    "CVS" | version (1) | chunk size (4) | body suite id (1) | nonce prefix (7)
          | sealed file key length (2) | sealed file key (an envelope) | chunk 0 | chunk 1 | ...

Plaintext chunks are ``chunk size`` bytes except the last (which may be empty); each sealed chunk
is 16 bytes longer. ``decrypt_file`` writes to a temporary file and renames it only after the
final chunk authenticates, so a failed decryption leaves nothing behind.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from carevault.platform.files import atomic_writer

from ._primitives import GCM_TAG_BYTES, AesGcm, random_bytes
from .canonical import BoundContext, Context
from .envelope import HEADER_BYTES, parse_header
from .errors import ConfigurationError, DecryptionError
from .keyring import Keyring
from .suites import Suite

MAGIC = b"CVS"
VERSION = 1
DEFAULT_CHUNK_BYTES = 256 * 1024
MIN_CHUNK_BYTES = 4 * 1024
MAX_CHUNK_BYTES = 8 * 1024 * 1024
MAX_CHUNKS = 2**32 - 1
_FIXED = struct.Struct(">3sBIB7sH")
_TAG = GCM_TAG_BYTES


def _file_key_context(context: Context) -> dict[str, str | int]:
    # The sealed file key is bound to the caller's context *and* to its role, so it cannot be
    # swapped with an ordinary encrypted field that happens to share the context.
    items = context.items if isinstance(context, BoundContext) else context
    return {**items, "carevault:stream": "file-key"}


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _read_full(src: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``src`` (short only at end of file); return the bytes read."""
    filled = 0
    while filled < len(view):
        got = src.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            break
        filled += got
    return int(filled)


def encrypt_stream(
    keyring: Keyring,
    src: BinaryIO,
    dst: BinaryIO,
    context: Context,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    suite: Suite | None = None,
) -> int:
    """Encrypt ``src`` into ``dst``; returns the plaintext length.

    ``suite`` (the adaptive policy's choice) seals the file key with that suite's active
    version; None uses the keyring's primary."""
    if not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise ConfigurationError(
            f"chunk size must be between {MIN_CHUNK_BYTES} and {MAX_CHUNK_BYTES} bytes"
        )
    chosen = suite if suite is not None else keyring.primary.suite
    # The body's AES key is never weaker than the suite that seals it (hybrid and RSA suites
    # protect their payload with AES-256).
    body_suite = Suite.AES_128_GCM if chosen is Suite.AES_128_GCM else Suite.AES_256_GCM
    file_key = random_bytes(body_suite.aes_key_bytes)
    sealed_key = keyring.encrypt(file_key, _file_key_context(context), suite=suite)
    prefix = random_bytes(7)
    header = _FIXED.pack(MAGIC, VERSION, chunk_bytes, body_suite.suite_id, prefix, len(sealed_key))
    header += sealed_key
    dst.write(header)
    aead = AesGcm(file_key)

    # Two buffers: we must read one chunk ahead to know whether the current one is the last.
    current, ahead = bytearray(chunk_bytes), bytearray(chunk_bytes)
    out = bytearray(chunk_bytes + _TAG)
    size = _read_full(src, memoryview(current))
    total, counter = 0, 0
    while True:
        next_size = _read_full(src, memoryview(ahead)) if size == chunk_bytes else 0
        last = next_size == 0
        if counter > MAX_CHUNKS:
            raise ConfigurationError("file too large for this chunk size")
        sealed = memoryview(out)[: size + _TAG]
        aead.seal_into(_nonce(prefix, counter, last), memoryview(current)[:size], header, sealed)
        dst.write(sealed)
        total += size
        if last:
            return total
        counter += 1
        current, ahead, size = ahead, current, next_size


def iter_decrypt(keyring: Keyring, src: BinaryIO, context: Context) -> Iterator[memoryview]:
    """Yield authenticated plaintext chunks in order.

    Every chunk yielded is authentic and in place, but the *file* is complete only when the
    iterator finishes without :class:`DecryptionError`; callers that cannot take back what they
    already passed on (e.g. an HTTP response) must abort the transfer on that error. Each
    yielded view is reused for the next chunk: copy it if you keep it.
    """
    fixed = src.read(_FIXED.size)
    if len(fixed) != _FIXED.size:
        raise DecryptionError()
    magic, version, chunk_bytes, suite_id, prefix, key_len = _FIXED.unpack(fixed)
    body_suite = Suite.from_id(suite_id)
    if (
        magic != MAGIC
        or version != VERSION
        or not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES
        or body_suite not in (Suite.AES_128_GCM, Suite.AES_256_GCM)
    ):
        raise DecryptionError()
    sealed_key = src.read(key_len)
    if len(sealed_key) != key_len:
        raise DecryptionError()
    header = fixed + sealed_key
    file_key = keyring.decrypt(sealed_key, _file_key_context(context))
    if len(file_key) != body_suite.aes_key_bytes:
        raise DecryptionError()
    aead = AesGcm(file_key)

    sealed_size = chunk_bytes + _TAG
    current, ahead = bytearray(sealed_size), bytearray(sealed_size)
    out = bytearray(chunk_bytes)
    size = _read_full(src, memoryview(current))
    counter = 0
    while True:
        if size < _TAG or counter > MAX_CHUNKS:
            raise DecryptionError()
        next_size = _read_full(src, memoryview(ahead)) if size == sealed_size else 0
        last = next_size == 0
        plain = memoryview(out)[: size - _TAG]
        aead.open_into(_nonce(prefix, counter, last), memoryview(current)[:size], header, plain)
        yield plain
        if last:
            return
        counter += 1
        current, ahead, size = ahead, current, next_size


def decrypt_stream(keyring: Keyring, src: BinaryIO, dst: BinaryIO, context: Context) -> int:
    """Decrypt ``src`` into ``dst``; see :func:`decrypt_file` for all-or-nothing output."""
    total = 0
    for chunk in iter_decrypt(keyring, src, context):
        dst.write(chunk)
        total += len(chunk)
    return total


def encrypt_file(
    keyring: Keyring,
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    context: Context,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> int:
    with open(src_path, "rb") as src, atomic_writer(dst_path) as dst:
        return encrypt_stream(keyring, src, dst, context, chunk_bytes=chunk_bytes)


def decrypt_file(
    keyring: Keyring,
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    context: Context,
) -> int:
    """All or nothing: ``dst_path`` appears only if the whole file authenticated."""
    with open(src_path, "rb") as src, atomic_writer(dst_path) as dst:
        return decrypt_stream(keyring, src, dst, context)


def sealing_suite(src: BinaryIO) -> Suite:
    """The suite whose key sealed this file's key, read from its header (not authenticated:
    re-encryption jobs use it to find files below a floor; decryption still checks it).
    :class:`DecryptionError` if ``src`` does not start like one of our files."""
    fixed = src.read(_FIXED.size)
    if len(fixed) != _FIXED.size:
        raise DecryptionError()
    magic, version, _chunk, _suite, _prefix, key_len = _FIXED.unpack(fixed)
    if magic != MAGIC or version != VERSION or key_len < HEADER_BYTES:
        raise DecryptionError()
    return parse_header(src.read(HEADER_BYTES)).suite
