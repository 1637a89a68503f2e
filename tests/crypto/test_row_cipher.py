"""Keyring.row: one row's fields sealed with the row's context encoded once. Same bytes as the
single-field API (either opens the other's envelopes), the same binding to table / column /
row / patient, the same one opaque error, and an encoding no two (row, column) pairs share."""

from __future__ import annotations

import pickle  # noqa: TID251 - only to prove that row ciphers refuse to be pickled
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carevault.crypto import (
    DecryptionError,
    EncodingError,
    Keyring,
    KeyState,
    RowContext,
    Suite,
    SuiteKind,
)
from carevault.crypto.canonical import context_bytes
from carevault.crypto.envelope import HEADER_BYTES


def assert_opaque_failure(decrypt: Callable[..., object], *args: Any) -> None:
    """``decrypt(*args)`` raises the one error of every failed decryption, saying nothing."""
    with pytest.raises(DecryptionError) as excinfo:
        decrypt(*args)
    error = excinfo.value
    assert type(error) is DecryptionError
    assert str(error) == "decryption failed"
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


ROW: dict[str, str | int] = {"table": "clinic_patient", "row": "r-1", "patient": "p-0001"}
FAST_SUITES = [s for s in Suite if s.kind is not SuiteKind.RSA]


def field_context(column: str, row: dict[str, str | int] = ROW) -> dict[str, str | int]:
    return {**row, "column": column}


@pytest.mark.parametrize("suite", FAST_SUITES, ids=str)
def test_what_a_row_seals_opens_with_the_single_field_api(keyrings_by_suite, suite):
    ring = keyrings_by_suite[suite]
    writer = ring.row(ROW, suite=suite)
    sealed = {column: writer.seal(column, column.encode() * 3) for column in ("name", "email")}

    for column, envelope in sealed.items():
        assert ring.decrypt(envelope, field_context(column)) == column.encode() * 3


@pytest.mark.parametrize("suite", FAST_SUITES, ids=str)
def test_what_the_single_field_api_seals_opens_with_a_row(keyrings_by_suite, suite):
    ring = keyrings_by_suite[suite]
    envelope = ring.encrypt(b"secret", field_context("name"), suite=suite)

    assert ring.row(ROW).open("name", envelope) == b"secret"
    assert ring.row(ROW).open("name", memoryview(envelope)) == b"secret"


def test_a_row_writes_the_same_header_as_the_single_field_api(keyrings_by_suite):
    ring = keyrings_by_suite[Suite.AES_256_GCM]
    by_row = ring.row(ROW).seal("name", b"x")
    single = ring.encrypt(b"x", field_context("name"))
    assert by_row[:HEADER_BYTES] == single[:HEADER_BYTES]
    assert len(by_row) == len(single)


def test_the_row_encoding_is_the_single_field_encoding_byte_for_byte():
    row = RowContext(ROW)
    for column in ("name", "", "zzz", "a" * 300, "é", "\ud800"):
        assert row.encode(column) == context_bytes(field_context(column))


@pytest.mark.parametrize(
    "other",
    [
        {"column": "email"},
        {"row": "r-2"},
        {"patient": "p-0002"},
        {"table": "clinic_note"},
    ],
    ids=["column", "row", "patient", "table"],
)
def test_a_ciphertext_moved_elsewhere_does_not_open(keyrings_by_suite, other):
    ring = keyrings_by_suite[Suite.AES_256_GCM]
    envelope = ring.row(ROW).seal("name", b"secret")
    moved = {**field_context("name"), **other}
    column = str(moved.pop("column"))

    assert_opaque_failure(ring.row(moved).open, column, envelope)
    assert_opaque_failure(ring.decrypt, envelope, {**moved, "column": column})


def test_a_ciphertext_under_another_patients_key_does_not_open():
    mine, theirs = Keyring.generate("patient:a"), Keyring.generate("patient:b")
    envelope = theirs.row(ROW).seal("name", b"secret")
    assert_opaque_failure(mine.row(ROW).open, "name", envelope)


def test_a_wrong_key_version_does_not_open():
    ring = Keyring.generate("patient:a")
    envelope = ring.row(ROW).seal("name", b"secret")
    ring.rotate()
    # The header edited to name the new version: authenticated, so it fails.
    edited = envelope[:4] + (2).to_bytes(4, "big") + envelope[HEADER_BYTES:]
    assert_opaque_failure(ring.row(ROW).open, "name", edited)
    # A version the keyring never had.
    unknown = envelope[:4] + (99).to_bytes(4, "big") + envelope[HEADER_BYTES:]
    assert_opaque_failure(ring.row(ROW).open, "name", unknown)
    # The old version still opens (decrypt-only) until it is disabled.
    assert ring.row(ROW).open("name", envelope) == b"secret"
    ring.disable(1)
    assert_opaque_failure(ring.row(ROW).open, "name", envelope)


def test_a_row_cipher_sees_states_changed_after_it_was_made():
    ring = Keyring.generate("patient:a")
    reader = ring.row(ROW)
    envelope = ring.row(ROW).seal("name", b"secret")
    ring.shred()
    assert_opaque_failure(reader.open, "name", envelope)


def test_a_row_follows_a_rotation_and_counts_every_seal():
    ring = Keyring.generate("patient:a", nonce_budget=2)
    writer = ring.row(ROW)
    envelopes = [writer.seal(column, b"v") for column in ("a", "b", "c")]

    assert [int.from_bytes(e[4:HEADER_BYTES], "big") for e in envelopes] == [1, 1, 2]
    assert [v.encryptions for v in ring.versions()] == [2, 1]
    assert ring.versions()[0].state is KeyState.DECRYPT_ONLY
    for column, envelope in zip("abc", envelopes, strict=True):
        assert ring.row(ROW).open(column, envelope) == b"v"


@pytest.mark.parametrize(
    "damage",
    [
        lambda e: e[:-1],
        lambda e: e[: HEADER_BYTES - 1],
        lambda e: b"",
        lambda e: e[:-1] + bytes([e[-1] ^ 1]),
        lambda e: b"XX" + e[2:],
        lambda e: e[:3] + bytes([Suite.AES_128_GCM.suite_id]) + e[4:],
    ],
    ids=["truncated", "short header", "empty", "flipped tag", "magic", "suite"],
)
def test_every_damaged_envelope_fails_with_the_one_opaque_error(damage):
    ring = Keyring.generate("patient:a")
    envelope = ring.row(ROW).seal("name", b"secret")
    assert_opaque_failure(ring.row(ROW).open, "name", damage(envelope))


def test_a_row_context_refuses_its_own_field_key_and_bad_values():
    with pytest.raises(EncodingError):
        RowContext({**ROW, "column": "name"})
    with pytest.raises(EncodingError):
        RowContext({"row": 1.5})  # type: ignore[dict-item]
    with pytest.raises(EncodingError):
        RowContext({1: "x"})  # type: ignore[dict-item]
    with pytest.raises(EncodingError):
        RowContext(ROW).encode(7)  # type: ignore[arg-type]
    with pytest.raises(EncodingError):
        Keyring.generate("patient:a").row({**ROW, "column": "name"})


def test_a_row_seals_bytes_only_and_cannot_be_pickled():
    writer = Keyring.generate("patient:a").row(ROW)
    with pytest.raises(TypeError):
        writer.seal("name", "text")  # type: ignore[arg-type]
    assert writer.seal("name", bytearray(b"ok"))
    with pytest.raises(TypeError):
        pickle.dumps(writer)
    assert "p-0001" not in repr(writer)


KEYS = st.sampled_from(["table", "row", "patient", "column", "a", "zz", "", "1:a"])
TEXT = st.text(max_size=12)
VALUES = st.one_of(TEXT, st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1))
ROWS = st.dictionaries(
    st.sampled_from(["table", "row", "patient", "b", "zz", "", "col", "columns"]),
    VALUES,
    max_size=4,
)


@settings(max_examples=400, deadline=None)
@given(first=ROWS, first_column=TEXT, second=ROWS, second_column=TEXT)
def test_distinct_row_and_column_pairs_never_share_an_encoding(
    first, first_column, second, second_column
):
    a = RowContext(first).encode(first_column)
    b = RowContext(second).encode(second_column)
    if (first, first_column) != (second, second_column):
        assert a != b
    else:
        assert a == b


@settings(max_examples=300, deadline=None)
@given(row=ROWS, column=TEXT, field_key=KEYS)
def test_a_row_encoding_always_equals_the_full_context_encoding(row, column, field_key):
    row.pop(field_key, None)
    assert RowContext(row, field_key=field_key).encode(column) == context_bytes(
        {**row, field_key: column}
    )
