"""Chunked file encryption (STREAM): round trips, every way of cutting or splicing a stream,
all-or-nothing file output, key hierarchy, and constant memory."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carevault.crypto import (
    BoundContext,
    ConfigurationError,
    Context,
    DecryptionError,
    Keyring,
    Suite,
    decrypt_file,
    decrypt_stream,
    encrypt_file,
    encrypt_stream,
    iter_decrypt,
    parse_header,
)
from carevault.crypto.streaming import _FIXED, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES

CHUNK = 4096  # the smallest chunk size: keeps multi-chunk files small
TAG = 16
CONTEXT = {"table": "lab_report", "column": "file", "row": 7, "patient": "p-123"}
# Three full chunks and a short fourth one: every chunk kind (first, middle, short last).
PLAINTEXT = bytes(range(256)) * (3 * CHUNK // 256) + b"tail of the report" * 6


@pytest.fixture(scope="module")
def keyring() -> Keyring:
    return Keyring.generate("lab-files", Suite.AES_256_GCM)


@dataclass(frozen=True)
class Layout:
    """Where things are in an encrypted stream, read from its own header."""

    blob: bytes
    chunk_bytes: int
    body_suite_id: int
    sealed_key: bytes
    header_len: int
    chunks: list[tuple[int, int]]  # (start, end) of each sealed chunk

    def chunk(self, i: int) -> bytes:
        start, end = self.chunks[i]
        return self.blob[start:end]

    def boundaries(self) -> list[int]:
        """Offsets at which a chunk starts, plus the end of the file."""
        return [start for start, _ in self.chunks] + [len(self.blob)]

    def with_chunks(self, order: list[int]) -> bytes:
        return self.blob[: self.header_len] + b"".join(self.chunk(i) for i in order)


def layout(blob: bytes) -> Layout:
    magic, version, chunk_bytes, suite_id, _prefix, key_len = _FIXED.unpack_from(blob)
    assert (magic, version) == (b"CVS", 1)
    header_len = _FIXED.size + key_len
    sealed_size = chunk_bytes + TAG
    chunks = []
    start = header_len
    while start < len(blob):
        end = min(start + sealed_size, len(blob))
        chunks.append((start, end))
        start = end
    return Layout(blob, chunk_bytes, suite_id, blob[_FIXED.size : header_len], header_len, chunks)


def encrypt(
    ring: Keyring, plaintext: bytes, context: Context = CONTEXT, chunk: int = CHUNK
) -> bytes:
    out = io.BytesIO()
    assert encrypt_stream(ring, io.BytesIO(plaintext), out, context, chunk_bytes=chunk) == len(
        plaintext
    )
    return out.getvalue()


def decrypt(ring: Keyring, blob: bytes, context: Context = CONTEXT) -> bytes:
    out = io.BytesIO()
    assert decrypt_stream(ring, io.BytesIO(blob), out, context) == len(out.getvalue())
    return out.getvalue()


def assert_rejected(ring: Keyring, blob: bytes) -> None:
    with pytest.raises(DecryptionError):
        decrypt(ring, blob)


def flip_bit(blob: bytes, offset: int, bit: int = 0) -> bytes:
    changed = bytearray(blob)
    changed[offset] ^= 1 << bit
    return bytes(changed)


@pytest.fixture(scope="module")
def encrypted(keyring: Keyring) -> Layout:
    return layout(encrypt(keyring, PLAINTEXT))


# Lengths at and around chunk boundaries.
ROUND_TRIP_LENGTHS = {
    "empty": 0,
    "one byte": 1,
    "one byte short of a chunk": CHUNK - 1,
    "exactly one chunk": CHUNK,
    "exactly three chunks": 3 * CHUNK,
    "three chunks and one byte": 3 * CHUNK + 1,
}


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("length", ROUND_TRIP_LENGTHS.values(), ids=ROUND_TRIP_LENGTHS.keys())
def test_a_stream_round_trips(keyring: Keyring, length: int) -> None:
    plaintext = os.urandom(length)
    assert decrypt(keyring, encrypt(keyring, plaintext)) == plaintext


@pytest.mark.parametrize("length", ROUND_TRIP_LENGTHS.values(), ids=ROUND_TRIP_LENGTHS.keys())
def test_a_file_round_trips(keyring: Keyring, tmp_path: Path, length: int) -> None:
    plaintext = os.urandom(length)
    (tmp_path / "report.pdf").write_bytes(plaintext)

    written = encrypt_file(
        keyring, tmp_path / "report.pdf", tmp_path / "report.cvs", CONTEXT, chunk_bytes=CHUNK
    )
    read = decrypt_file(keyring, tmp_path / "report.cvs", tmp_path / "report.out", CONTEXT)

    assert written == read == length
    assert (tmp_path / "report.out").read_bytes() == plaintext
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.cvs", "report.out", "report.pdf"]


@pytest.mark.parametrize(
    ("length", "sealed_chunks"),
    [(0, 1), (1, 1), (CHUNK, 1), (3 * CHUNK, 3), (3 * CHUNK + 1, 4)],
)
def test_the_ciphertext_has_one_sealed_chunk_per_plaintext_chunk(
    keyring: Keyring, length: int, sealed_chunks: int
) -> None:
    # An exact multiple of the chunk size gets no empty trailing chunk; an empty file gets one
    # empty chunk, so that even it carries an authenticated "last" marker.
    found = layout(encrypt(keyring, bytes(length)))

    assert len(found.chunks) == sealed_chunks
    assert len(found.blob) == found.header_len + length + sealed_chunks * TAG


def test_encrypting_the_same_file_twice_gives_unrelated_ciphertexts(keyring: Keyring) -> None:
    first, second = layout(encrypt(keyring, PLAINTEXT)), layout(encrypt(keyring, PLAINTEXT))

    assert first.sealed_key != second.sealed_key
    assert all(first.chunk(i) != second.chunk(i) for i in range(len(first.chunks)))


# Hypothesis runs the body many times; a module-level keyring avoids a function-scoped fixture.
_HYPOTHESIS_RING = Keyring.generate("hypothesis", Suite.AES_256_GCM)


@settings(max_examples=30, deadline=None)
@given(plaintext=st.binary(min_size=0, max_size=20_000))
def test_any_length_round_trips(plaintext: bytes) -> None:
    ring = _HYPOTHESIS_RING
    assert decrypt(ring, encrypt(ring, plaintext)) == plaintext


# -- reordering, cutting, splicing ------------------------------------------------------------


@pytest.mark.parametrize("dropped", [0, 1, 2, 3])
def test_a_stream_with_a_chunk_dropped_is_rejected(
    keyring: Keyring, encrypted: Layout, dropped: int
) -> None:
    order = [i for i in range(len(encrypted.chunks)) if i != dropped]
    assert_rejected(keyring, encrypted.with_chunks(order))


@pytest.mark.parametrize("order", [[1, 0, 2, 3], [0, 2, 1, 3], [0, 1, 3, 2], [3, 1, 2, 0]])
def test_a_stream_with_two_chunks_swapped_is_rejected(
    keyring: Keyring, encrypted: Layout, order: list[int]
) -> None:
    assert_rejected(keyring, encrypted.with_chunks(order))


@pytest.mark.parametrize("order", [[0, 0, 1, 2, 3], [0, 1, 1, 2, 3], [0, 1, 2, 3, 3]])
def test_a_stream_with_a_chunk_duplicated_is_rejected(
    keyring: Keyring, encrypted: Layout, order: list[int]
) -> None:
    assert_rejected(keyring, encrypted.with_chunks(order))


def test_a_chunk_from_another_stream_is_rejected(keyring: Keyring, encrypted: Layout) -> None:
    # Same keyring, same context, same position: only the per-file key and prefix differ.
    other = layout(encrypt(keyring, PLAINTEXT))
    spliced = (
        encrypted.blob[: encrypted.chunks[1][0]]
        + other.chunk(1)
        + encrypted.blob[encrypted.chunks[1][1] :]
    )
    assert_rejected(keyring, spliced)


@pytest.mark.parametrize("shape", ["exact chunks", "short last chunk"])
def test_a_stream_truncated_at_any_chunk_boundary_is_rejected(keyring: Keyring, shape: str) -> None:
    plaintext = PLAINTEXT[: 3 * CHUNK] if shape == "exact chunks" else PLAINTEXT
    found = layout(encrypt(keyring, plaintext))
    for cut in found.boundaries()[:-1]:  # the last boundary is the intact file
        assert_rejected(keyring, found.blob[:cut])


def test_a_stream_truncated_inside_any_chunk_is_rejected(
    keyring: Keyring, encrypted: Layout
) -> None:
    for start, end in encrypted.chunks:
        for cut in (start + 1, start + TAG - 1, start + TAG, (start + end) // 2, end - 1):
            assert_rejected(keyring, encrypted.blob[:cut])


def test_a_stream_truncated_inside_its_header_is_rejected(
    keyring: Keyring, encrypted: Layout
) -> None:
    for cut in range(encrypted.header_len):
        assert_rejected(keyring, encrypted.blob[:cut])


@pytest.mark.parametrize("extra", [b"\x00", os.urandom(TAG), os.urandom(CHUNK + TAG)])
@pytest.mark.parametrize("shape", ["exact chunks", "short last chunk"])
def test_a_stream_with_bytes_appended_is_rejected(
    keyring: Keyring, shape: str, extra: bytes
) -> None:
    plaintext = PLAINTEXT[: 3 * CHUNK] if shape == "exact chunks" else PLAINTEXT
    assert_rejected(keyring, encrypt(keyring, plaintext) + extra)


def test_an_empty_stream_with_bytes_appended_is_rejected(keyring: Keyring) -> None:
    assert_rejected(keyring, encrypt(keyring, b"") + b"\x00")


# -- bit flips ----------------------------------------------------------------------------------


def test_a_flipped_bit_anywhere_in_the_fixed_header_is_rejected(
    keyring: Keyring, encrypted: Layout
) -> None:
    # Magic, version, chunk size, body suite, nonce prefix and sealed-key length: all of them.
    for offset in range(_FIXED.size):
        for bit in range(8):
            assert_rejected(keyring, flip_bit(encrypted.blob, offset, bit))


def test_a_flipped_bit_anywhere_in_the_sealed_file_key_is_rejected(
    keyring: Keyring, encrypted: Layout
) -> None:
    for offset in range(_FIXED.size, encrypted.header_len):
        assert_rejected(keyring, flip_bit(encrypted.blob, offset, offset % 8))


def test_a_flipped_bit_in_any_chunk_is_rejected(keyring: Keyring, encrypted: Layout) -> None:
    for start, end in encrypted.chunks:
        # First byte, middle of the ciphertext, and inside the tag.
        for offset in (start, (start + end) // 2, end - TAG, end - 1):
            assert_rejected(keyring, flip_bit(encrypted.blob, offset, offset % 8))


@pytest.mark.parametrize("size", [CHUNK + 1, 2 * CHUNK, MAX_CHUNK_BYTES])
def test_a_header_edited_to_another_valid_chunk_size_is_rejected(
    keyring: Keyring, size: int
) -> None:
    # A single short chunk reads the same under any larger chunk size, so only the header
    # being authenticated (it is every chunk's associated data) catches the edit.
    blob = encrypt(keyring, b"short report")
    fields = list(_FIXED.unpack_from(blob))
    fields[2] = size

    assert_rejected(keyring, _FIXED.pack(*fields) + blob[_FIXED.size :])


def test_a_header_naming_a_chunk_size_outside_the_limits_is_rejected(
    keyring: Keyring, encrypted: Layout
) -> None:
    for size in (0, MIN_CHUNK_BYTES - 1, MAX_CHUNK_BYTES + 1):
        fields = list(_FIXED.unpack_from(encrypted.blob))
        fields[2] = size
        assert_rejected(keyring, _FIXED.pack(*fields) + encrypted.blob[_FIXED.size :])


# -- keys and contexts ----------------------------------------------------------------------------


def test_decrypting_with_another_context_fails(keyring: Keyring, encrypted: Layout) -> None:
    with pytest.raises(DecryptionError):
        decrypt(keyring, encrypted.blob, {**CONTEXT, "patient": "p-124"})


def test_decrypting_with_another_keyring_fails(encrypted: Layout) -> None:
    with pytest.raises(DecryptionError):
        decrypt(Keyring.generate("lab-files", Suite.AES_256_GCM), encrypted.blob)


def test_a_bound_context_and_its_mapping_are_interchangeable(keyring: Keyring) -> None:
    bound = BoundContext(CONTEXT)

    assert decrypt(keyring, encrypt(keyring, PLAINTEXT, bound)) == PLAINTEXT
    assert decrypt(keyring, encrypt(keyring, PLAINTEXT, CONTEXT), bound) == PLAINTEXT
    assert decrypt(keyring, encrypt(keyring, PLAINTEXT, bound), CONTEXT) == PLAINTEXT


def test_the_sealed_file_key_is_not_a_field_ciphertext_of_the_same_context(
    keyring: Keyring, encrypted: Layout
) -> None:
    # The file key is bound to its role, so it cannot be passed off as an encrypted field.
    with pytest.raises(DecryptionError):
        keyring.decrypt(encrypted.sealed_key, CONTEXT)


def test_the_file_key_is_sealed_under_the_primary_and_survives_rotation() -> None:
    ring = Keyring.generate("rotating", Suite.AES_256_GCM)
    old = encrypt(ring, PLAINTEXT)
    ring.rotate()
    new = encrypt(ring, PLAINTEXT)

    assert parse_header(layout(old).sealed_key).key_id == 1
    assert parse_header(layout(new).sealed_key).key_id == ring.primary.version == 2
    assert decrypt(ring, old) == decrypt(ring, new) == PLAINTEXT


def test_destroying_the_key_that_sealed_a_file_key_makes_the_file_unrecoverable() -> None:
    ring = Keyring.generate("shredded", Suite.AES_256_GCM)
    old = encrypt(ring, PLAINTEXT)
    ring.rotate()
    ring.destroy(1)

    with pytest.raises(DecryptionError):
        decrypt(ring, old)


@pytest.mark.parametrize(
    ("suite", "body_suite"),
    [
        (Suite.AES_128_GCM, Suite.AES_128_GCM),
        (Suite.AES_192_GCM, Suite.AES_256_GCM),
        (Suite.AES_256_GCM, Suite.AES_256_GCM),
        (Suite.HYBRID_X25519_AES_256_GCM, Suite.AES_256_GCM),
    ],
    ids=lambda s: s.label,
)
def test_the_body_suite_follows_the_keyring(suite: Suite, body_suite: Suite) -> None:
    ring = Keyring.generate("suites", suite)
    found = layout(encrypt(ring, PLAINTEXT))

    assert found.body_suite_id == body_suite.suite_id
    assert parse_header(found.sealed_key).suite is suite
    assert decrypt(ring, found.blob) == PLAINTEXT


# -- partial output ------------------------------------------------------------------------------


def test_decrypt_file_on_a_tampered_file_leaves_no_output_and_no_part_file(
    keyring: Keyring, encrypted: Layout, tmp_path: Path
) -> None:
    # The damage is in the last chunk, so every earlier chunk was decrypted and written first.
    (tmp_path / "report.cvs").write_bytes(flip_bit(encrypted.blob, len(encrypted.blob) - 1))

    with pytest.raises(DecryptionError):
        decrypt_file(keyring, tmp_path / "report.cvs", tmp_path / "report.pdf", CONTEXT)

    assert [p.name for p in tmp_path.iterdir()] == ["report.cvs"]


def test_decrypt_file_on_a_truncated_file_keeps_the_previous_output(
    keyring: Keyring, encrypted: Layout, tmp_path: Path
) -> None:
    (tmp_path / "report.cvs").write_bytes(encrypted.blob[: encrypted.chunks[-1][0]])
    (tmp_path / "report.pdf").write_bytes(b"the previous version")

    with pytest.raises(DecryptionError):
        decrypt_file(keyring, tmp_path / "report.cvs", tmp_path / "report.pdf", CONTEXT)

    assert (tmp_path / "report.pdf").read_bytes() == b"the previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.cvs", "report.pdf"]


def test_decrypted_and_encrypted_files_are_readable_by_their_owner_only(
    keyring: Keyring, tmp_path: Path
) -> None:
    (tmp_path / "report.pdf").write_bytes(PLAINTEXT)
    encrypt_file(keyring, tmp_path / "report.pdf", tmp_path / "report.cvs", CONTEXT)
    decrypt_file(keyring, tmp_path / "report.cvs", tmp_path / "copy.pdf", CONTEXT)

    for name in ("report.cvs", "copy.pdf"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_iter_decrypt_yields_authentic_chunks_before_it_detects_truncation(
    keyring: Keyring, encrypted: Layout
) -> None:
    # Documented behaviour: each yielded chunk is authentic, but the *file* is complete only if
    # the iterator finishes. A caller streaming to a client must abort on the error.
    truncated = encrypted.blob[: encrypted.chunks[3][0]]  # the last chunk is missing
    received = []

    with pytest.raises(DecryptionError):  # noqa: PT012 - the error comes mid-iteration
        for chunk in iter_decrypt(keyring, io.BytesIO(truncated), CONTEXT):
            received.append(bytes(chunk))

    assert received == [PLAINTEXT[:CHUNK], PLAINTEXT[CHUNK : 2 * CHUNK]]


# -- parameters and memory -------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [0, MIN_CHUNK_BYTES - 1, MAX_CHUNK_BYTES + 1, -CHUNK])
def test_a_chunk_size_outside_the_limits_is_refused(keyring: Keyring, chunk: int) -> None:
    with pytest.raises(ConfigurationError, match="chunk size"):
        encrypt_stream(keyring, io.BytesIO(b"x"), io.BytesIO(), CONTEXT, chunk_bytes=chunk)


@pytest.mark.parametrize("chunk", [MIN_CHUNK_BYTES, MAX_CHUNK_BYTES])
def test_the_chunk_size_limits_themselves_are_accepted(keyring: Keyring, chunk: int) -> None:
    found = layout(encrypt(keyring, PLAINTEXT, chunk=chunk))

    assert found.chunk_bytes == chunk
    assert decrypt(keyring, found.blob) == PLAINTEXT


class PatternSource(io.RawIOBase):
    """``size`` bytes of a repeating pattern, produced on demand and never held."""

    _PATTERN = bytes(range(256)) * 256  # 64 KiB

    def __init__(self, size: int) -> None:
        self.left = size
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left, len(self._PATTERN))
        buffer[:n] = self._PATTERN[:n]
        self.digest.update(self._PATTERN[:n])
        self.left -= n
        return n


class CountingSink(io.RawIOBase):
    """Counts and hashes what is written, keeps none of it."""

    def __init__(self) -> None:
        self.count = 0
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | memoryview) -> int:  # type: ignore[override]
        self.count += len(data)
        self.digest.update(data)
        return len(data)


SIZE = 32 * 1024 * 1024
MEMORY_CEILING = 4 * 1024 * 1024  # an order of magnitude below the data; default chunk 256 KiB


def test_encryption_runs_in_constant_memory(keyring: Keyring) -> None:
    source, sink = PatternSource(SIZE), CountingSink()

    tracemalloc.start()
    try:
        encrypt_stream(keyring, source, sink, CONTEXT)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert source.left == 0
    assert sink.count > SIZE
    assert peak < MEMORY_CEILING


def test_decryption_runs_in_constant_memory(keyring: Keyring, tmp_path: Path) -> None:
    source = PatternSource(SIZE)
    with open(tmp_path / "big.cvs", "wb") as out:
        encrypt_stream(keyring, source, out, CONTEXT)  # type: ignore[arg-type]
    sink = CountingSink()

    tracemalloc.start()
    try:
        with open(tmp_path / "big.cvs", "rb") as src:
            decrypt_stream(keyring, src, sink, CONTEXT)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert sink.count == SIZE
    assert sink.digest.digest() == source.digest.digest()
    assert peak < MEMORY_CEILING
