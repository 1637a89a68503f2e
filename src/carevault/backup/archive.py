"""The backup file: a signed header, a body encrypted with streaming AES-256-GCM, a trailer.

Layout::

    "CVBACKUP" | format (1) | header length (4) | header (canonical JSON)
               | body: a STREAM file (crypto/streaming.py) holding a tar archive
               | signature (text) | signature length (2) | body length (8) | "CVEND"

The body is sealed under a fresh backup keyring (one AES-256-GCM key) that is itself wrapped by
the master key and stored in the header, so only a holder of the master key can read it. The
Ed25519 signature covers the header and the SHA-256 of the body: editing any byte, cutting the
file short or appending to it is refused before anything is decrypted. Nothing here is new
cryptography: every primitive is the crypto core's (pyca/cryptography underneath).

A file is written beside its destination under a temporary name and renamed only once it is
complete and synced, so a backup killed at any instant leaves no file that looks valid.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from carevault.crypto import (
    CryptoError,
    InvalidSignatureError,
    KeyEncryptionKey,
    Keyring,
    Signature,
    SigningKey,
    Suite,
    VerifyKey,
    streaming,
    unwrap_keyring,
    wrap_keyring,
)
from carevault.crypto.canonical import canonical_bytes
from carevault.platform.files import atomic_writer

MAGIC = b"CVBACKUP"
FORMAT = 1
END = b"CVEND"
SUFFIX = ".cvbackup"
PURPOSE = "carevault-backup"
_PREFIX = struct.Struct(">8sBI")
_TRAILER = struct.Struct(">HQ5s")
_MAX_HEADER = 1 << 20
_MAX_SIGNATURE = 4096
_COPY = 1 << 20


class BackupError(Exception):
    """A backup that cannot be made, read or trusted; the message is one line for the operator."""


@dataclass(frozen=True)
class Layout:
    """Where the parts of a backup file are (checked for shape only, not yet trusted)."""

    header: dict[str, Any]
    body_start: int
    body_bytes: int
    signature: str


def _body_context(backup_id: str) -> dict[str, str]:
    return {"purpose": "backup-body", "backup": backup_id}


def keyring_name(backup_id: str) -> str:
    return f"backup:{backup_id}"


def _copy_hashing(src: BinaryIO, dst: BinaryIO, length: int, digest: Any) -> None:
    left = length
    while left:
        chunk = src.read(min(_COPY, left))
        if not chunk:
            raise BackupError("the backup is truncated")
        digest.update(chunk)
        dst.write(chunk)
        left -= len(chunk)


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what the encryptor writes on its way into the file."""

    def __init__(self, dst: BinaryIO) -> None:
        self.dst = dst
        self.digest = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.dst.write(view)
        self.digest.update(view)
        self.count += len(view)
        return len(view)


class _Bounded(io.RawIOBase):
    """The body region of a backup file, as a stream that ends where the body ends."""

    def __init__(self, src: BinaryIO, length: int) -> None:
        self.src = src
        self.left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.left)
        if want == 0:
            return 0
        got = self.src.readinto(view[:want])  # type: ignore[attr-defined]
        got = int(got or 0)
        self.left -= got
        return got


def signed_record(header: Mapping[str, Any], body_sha256: str, body_bytes: int) -> dict[str, Any]:
    return {"header": dict(header), "body_sha256": body_sha256, "body_bytes": body_bytes}


def write(
    dest: Path,
    tar_path: Path,
    header: dict[str, Any],
    kek: KeyEncryptionKey,
    signer: SigningKey,
) -> dict[str, Any]:
    """Encrypt ``tar_path`` into the backup file ``dest`` (atomically); returns the header.

    ``header`` must hold ``backup_id``; the wrapped body key and the signer are added here."""
    backup_id = str(header["backup_id"])
    ring = Keyring.generate(keyring_name(backup_id), Suite.AES_256_GCM)
    header = {
        **header,
        "format": FORMAT,
        "wrapped_key": base64.b64encode(wrap_keyring(ring, kek)).decode(),
        "signer": {
            "algorithm": signer.algorithm.value,
            "key_id": signer.key_id,
            "public_key": base64.b64encode(signer.verify_key.public_bytes()).decode(),
        },
    }
    header_bytes = canonical_bytes(header)
    with atomic_writer(dest) as out:
        out.write(_PREFIX.pack(MAGIC, FORMAT, len(header_bytes)))
        out.write(header_bytes)
        body = _HashingWriter(out)
        with open(tar_path, "rb") as src:
            streaming.encrypt_stream(ring, src, body, _body_context(backup_id))  # type: ignore[arg-type]
        record = signed_record(header, body.digest.hexdigest(), body.count)
        signature = signer.sign(record, purpose=PURPOSE).to_text().encode()
        out.write(signature)
        out.write(_TRAILER.pack(len(signature), body.count, END))
    return header


def read_layout(path: Path) -> Layout:
    """The header and the body's place, if the file has the shape of a whole backup."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as src:
            prefix = src.read(_PREFIX.size)
            if len(prefix) != _PREFIX.size:
                raise BackupError(f"{path.name} is not a CareVault backup (too short)")
            magic, fmt, header_len = _PREFIX.unpack(prefix)
            if magic != MAGIC:
                raise BackupError(f"{path.name} is not a CareVault backup")
            if fmt != FORMAT:
                raise BackupError(
                    f"{path.name} has backup format {fmt}, this version reads {FORMAT}"
                )
            if header_len > _MAX_HEADER or _PREFIX.size + header_len + _TRAILER.size > size:
                raise BackupError(f"{path.name} is truncated or damaged (header)")
            header_bytes = src.read(header_len)
            src.seek(size - _TRAILER.size)
            sig_len, body_bytes, end = _TRAILER.unpack(src.read(_TRAILER.size))
            body_start = _PREFIX.size + header_len
            if (
                end != END
                or sig_len > _MAX_SIGNATURE
                or body_start + body_bytes + sig_len + _TRAILER.size != size
            ):
                raise BackupError(f"{path.name} is truncated or damaged (no complete trailer)")
            src.seek(body_start + body_bytes)
            signature = src.read(sig_len).decode("ascii", errors="replace")
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BackupError(f"{path.name} is damaged (header)") from None
    if not isinstance(header, dict) or canonical_bytes(header) != header_bytes:
        raise BackupError(f"{path.name} is damaged (header)")
    return Layout(header, body_start, body_bytes, signature)


def signer_of(layout: Layout) -> VerifyKey:
    try:
        signer = layout.header["signer"]
        return VerifyKey.from_bytes(signer["algorithm"], base64.b64decode(signer["public_key"]))
    except (KeyError, TypeError, ValueError, CryptoError):
        raise BackupError("the backup names no usable signing key") from None


def check_signature(path: Path, layout: Layout) -> VerifyKey:
    """The header's signer, once its signature over the header and the whole body holds."""
    signer = signer_of(layout)
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        src.seek(layout.body_start)
        left = layout.body_bytes
        while left:
            chunk = src.read(min(_COPY, left))
            if not chunk:
                raise BackupError(f"{path.name} is truncated")
            digest.update(chunk)
            left -= len(chunk)
    record = signed_record(layout.header, digest.hexdigest(), layout.body_bytes)
    try:
        signer.verify(record, Signature.from_text(layout.signature), purpose=PURPOSE)
    except InvalidSignatureError:
        raise BackupError(
            f"{path.name} has been tampered with: its signature does not verify"
        ) from None
    return signer


def open_body_key(layout: Layout, kek: KeyEncryptionKey) -> Keyring:
    backup_id = str(layout.header.get("backup_id", ""))
    try:
        wrapped = base64.b64decode(layout.header["wrapped_key"])
        return unwrap_keyring(wrapped, kek, keyring_name(backup_id))
    except (KeyError, TypeError, ValueError, CryptoError):
        raise BackupError(
            "the backup was made under another master key (its key does not unwrap with this one)"
        ) from None


def decrypt_body(path: Path, layout: Layout, kek: KeyEncryptionKey, dest: Path) -> None:
    """Decrypt the body (the tar archive) into ``dest``, all or nothing."""
    ring = open_body_key(layout, kek)
    context = _body_context(str(layout.header["backup_id"]))
    try:
        with open(path, "rb") as src, atomic_writer(dest) as out:
            src.seek(layout.body_start)
            body = io.BufferedReader(_Bounded(src, layout.body_bytes), _COPY)
            streaming.decrypt_stream(ring, body, out, context)
    except CryptoError:
        raise BackupError(f"{path.name} does not decrypt: damaged or tampered with") from None


class _Chunks(io.RawIOBase):
    """The authenticated chunks of :func:`streaming.iter_decrypt` as a readable stream."""

    def __init__(self, chunks: Iterator[memoryview]) -> None:
        self.chunks = chunks
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self.pending:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.pending = bytes(chunk)  # the iterator reuses its buffer: copy
        n = min(len(view), len(self.pending))
        view[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


@contextlib.contextmanager
def body_stream(path: Path, layout: Layout, kek: KeyEncryptionKey) -> Iterator[BinaryIO]:
    """The decrypted body as a stream, nothing written to disk. Each chunk read is authentic;
    the body is *complete* only once the stream has been read to its end without error
    (callers drain it), and a :class:`CryptoError` from reading means damage."""
    ring = open_body_key(layout, kek)
    context = _body_context(str(layout.header["backup_id"]))
    with open(path, "rb") as src:
        src.seek(layout.body_start)
        body = io.BufferedReader(_Bounded(src, layout.body_bytes), _COPY)
        chunks = streaming.iter_decrypt(ring, body, context)
        yield io.BufferedReader(_Chunks(chunks), _COPY)


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
