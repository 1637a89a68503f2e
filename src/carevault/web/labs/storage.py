"""Encrypted file storage for lab uploads: streaming AEAD under the patient's data key, random
file names, atomic writes. What is on disk is ciphertext only."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings

from carevault.crypto import Suite, streaming
from carevault.platform.files import atomic_writer
from carevault.web.vault import service

# What a lab may upload, recognised by content (the name and the browser's claim are not
# trusted): PDF reports and PNG / JPEG images.
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
}


def sniff(head: bytes) -> str | None:
    """The allowed content type these first bytes belong to, or None."""
    for content_type, magics in SIGNATURES.items():
        if any(head.startswith(m) for m in magics):
            return content_type
    return None


# What a refused file's content is, for the audit log and the threat detection only (never to
# accept a file): the kinds no clinical upload has (programs, scripts, web pages: the AI layer's
# "dangerous upload content" rule, security/rules.py) and archives. Without it every refused file
# reached the detectors as "not recognised", and that rule could not fire on a real upload.
_DESCRIBED: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "application/x-dosexec"),
    (b"\x7fELF", "application/x-executable"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xce\xfa\xed\xfe", "application/x-mach-binary"),
    (b"#!", "text/x-shellscript"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
)
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe")


def describe(head: bytes) -> str:
    """What these first bytes are, as far as the audit needs to say: an allowed type, a program,
    a script, a web page or an archive; "" for anything else."""
    allowed = sniff(head)
    if allowed is not None:
        return allowed
    for magic, content_type in _DESCRIBED:
        if head.startswith(magic):
            return content_type
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return "text/html" if text.startswith(_HTML_STARTS) else ""


# How much of a file is read to recognise it.
HEAD_BYTES = 512


# The decision log names a file's content by this pseudo-table (its record's own fields, the
# file name and digest, are logged under the record's table).
CONTENT_TABLE = "labs_labfile:content"


def _context(patient_id: object, file_id: object) -> dict[str, str | int]:
    return {
        "table": "labs_labfile",
        "column": "content",
        "row": str(file_id),
        "patient": str(patient_id),
    }


def upload_dir() -> Path:
    path = Path(settings.UPLOAD_DIR)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


class _HashingReader:
    """Reads through to ``src`` while hashing, so the digest costs no second pass."""

    def __init__(self, src: BinaryIO) -> None:
        self.src = src
        self.hash = hashlib.sha256()
        self.size = 0

    def readinto(self, buffer: memoryview) -> int:
        n = self.src.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self.hash.update(buffer[:n])
            self.size += n
        return int(n or 0)


def store(
    patient_id: Any, file_id: object, src: BinaryIO, *, suite: Suite | None = None
) -> tuple[str, str, int]:
    """Encrypt ``src`` into a new file, its key sealed under ``suite`` (the policy's choice;
    None: the keyring's primary); returns (storage name, sha256 of plaintext, size)."""
    name = secrets.token_hex(16) + ".cvs"
    reader = _HashingReader(src)
    if suite is None:
        ring = service.patient_keyring(patient_id)
    else:
        ring = service.keyring_for(patient_id, suite)
    with atomic_writer(upload_dir() / name) as dst:
        streaming.encrypt_stream(
            ring,
            reader,  # type: ignore[arg-type]
            dst,
            _context(patient_id, file_id),
            suite=suite,
        )
    service.count_encryptions(patient_id, 1)
    return name, reader.hash.hexdigest(), reader.size


def sealing_suite(name: str) -> Suite:
    """The suite that sealed a stored file's key (from its header; DecryptionError if the file
    is not one of ours, OSError if it is missing)."""
    with open(upload_dir() / name, "rb") as src:
        return streaming.sealing_suite(src)


def remove(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (upload_dir() / name).unlink()


def open_decrypted(patient_id: Any, file_id: object, name: str) -> Iterator[bytes]:
    """Authenticated plaintext chunks; raises DecryptionError on any tampering (see
    :func:`carevault.crypto.streaming.iter_decrypt` for what that means mid-transfer)."""
    ring = service.patient_keyring(patient_id)
    with open(upload_dir() / name, "rb") as src:
        for chunk in streaming.iter_decrypt(ring, src, _context(patient_id, file_id)):
            yield bytes(chunk)


def plaintext_digest(patient_id: Any, file_id: object, name: str) -> tuple[str, int]:
    """Decrypt the whole file without keeping it: (sha256 of the plaintext, its size).

    Raises DecryptionError if any part of it fails to authenticate, OSError if it is missing.
    Used to check a file against its signed digest before any of it is shown or served."""
    digest = hashlib.sha256()
    size = 0
    ring = service.patient_keyring(patient_id)
    with open(upload_dir() / name, "rb") as src:
        for chunk in streaming.iter_decrypt(ring, src, _context(patient_id, file_id)):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class _ChunkReader:
    """A readable stream over decrypted chunks, so a file is re-encrypted in constant memory and
    its plaintext never touches the disk."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = b""

    def readinto(self, buffer: memoryview) -> int:
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def reencrypt(patient_id: Any, file_id: object, name: str, suite: Suite) -> str:
    """A new stored file holding the same content with its key sealed under ``suite``; returns
    its name (the old file is left for the caller to remove once the record points to the new
    one). DecryptionError if the old file does not authenticate; nothing is left behind then."""
    new_name = secrets.token_hex(16) + ".cvs"
    ring = service.keyring_for(patient_id, suite)
    reader = _ChunkReader(open_decrypted(patient_id, file_id, name))
    with atomic_writer(upload_dir() / new_name) as dst:
        streaming.encrypt_stream(
            ring,
            reader,  # type: ignore[arg-type]
            dst,
            _context(patient_id, file_id),
            suite=suite,
        )
    service.count_encryptions(patient_id, 1)
    return new_name
