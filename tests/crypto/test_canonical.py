"""The canonical encoding: one byte string per record, and a clear refusal, naming the path,
for anything that has no canonical form."""

from __future__ import annotations

import json

import pytest

from carevault.crypto import BoundContext, EncodingError, canonical_bytes
from carevault.crypto.canonical import context_bytes


def test_keys_are_sorted_at_every_level() -> None:
    encoded = canonical_bytes({"b": 1, "a": {"z": None, "y": [{"d": 1, "c": 2}]}})

    assert encoded == b'{"a":{"y":[{"c":2,"d":1}],"z":null},"b":1}'


def test_insertion_order_does_not_change_the_encoding() -> None:
    assert canonical_bytes({"a": 1, "b": 2}) == canonical_bytes({"b": 2, "a": 1})


def test_the_encoding_is_compact() -> None:
    assert canonical_bytes({"a": [1, 2], "b": "x y"}) == b'{"a":[1,2],"b":"x y"}'


def test_unicode_is_kept_as_utf8_not_escaped() -> None:
    encoded = canonical_bytes({"notes": "après 🍽️ — 饭后"})

    assert encoded == '{"notes":"après 🍽️ — 饭后"}'.encode()
    assert b"\\u" not in encoded


def test_scalars_encode_as_json() -> None:
    assert canonical_bytes([None, True, False, 0, -7, "", '"q"']) == (
        b'[null,true,false,0,-7,"","\\"q\\""]'
    )


def test_tuples_encode_as_lists() -> None:
    assert canonical_bytes({"a": (1, 2)}) == canonical_bytes({"a": [1, 2]})


def test_the_encoding_is_valid_json_that_reads_back() -> None:
    record = {"patient": "p-1", "values": ["7.25", 3, None], "signed": True}
    assert json.loads(canonical_bytes(record)) == record


def test_integers_up_to_2_to_the_53_minus_1_are_accepted() -> None:
    limit = 2**53 - 1
    assert canonical_bytes([limit, -limit]) == f"[{limit},{-limit}]".encode()


@pytest.mark.parametrize(
    ("record", "path", "reason"),
    [
        ({"dose": 0.5}, "record.dose", "floats"),
        ({"dose": float("nan")}, "record.dose", "floats"),
        ({"lab": {"values": [1, 2.0]}}, r"record.lab.values\[1\]", "floats"),
        ({"count": 2**53}, "record.count", "beyond 2\\^53"),
        ({"count": -(2**53)}, "record.count", "beyond 2\\^53"),
        ({"scan": b"\x00"}, "record.scan", "bytes cannot be encoded"),
        ({"tags": {"a"}}, "record.tags", "set cannot be encoded"),
        ({"lab": {1: "x"}}, "record.lab", "keys must be strings, got int"),
        ({"name": "a\ud800"}, "record.name", "not valid Unicode"),
        ({"lab": {"\udcff": 1}}, "record.lab", "not valid Unicode"),
        (0.5, "record", "floats"),
    ],
    ids=[
        "float",
        "nan",
        "nested float",
        "huge int",
        "huge negative int",
        "bytes",
        "set",
        "non-str key",
        "lone surrogate",
        "lone surrogate in a key",
        "top-level float",
    ],
)
def test_values_without_a_canonical_form_are_refused_naming_the_path(
    record: object, path: str, reason: str
) -> None:
    with pytest.raises(EncodingError, match=f"^{path}: .*{reason}"):
        canonical_bytes(record)


def test_the_context_encoding_is_pinned() -> None:
    # Every stored ciphertext authenticates this encoding: changing it makes old data
    # undecryptable, so any change must be deliberate (and versioned).
    assert context_bytes({"table": "patient", "row": 7}) == b"3:rowi7;5:tables7:patient"
    assert context_bytes({}) == b""


def test_the_context_encoding_ignores_insertion_order() -> None:
    assert context_bytes({"a": 1, "b": "x"}) == context_bytes({"b": "x", "a": 1})


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"row": 7}, {"row": "7"}),
        ({"a": "x1:bs1:y"}, {"a": "x", "b": "y"}),
        ({"ab": "c"}, {"a": "bc"}),
        ({"a": "i1;"}, {"a": 1}),
        ({"row": -1}, {"row": 1}),
        ({"k": "é"}, {"k": "e\u0301"}),
    ],
    ids=[
        "int vs text",
        "value holding a field",
        "key/value split",
        "text like an int",
        "sign",
        "normalisation",
    ],
)
def test_different_contexts_never_share_an_encoding(
    first: dict[str, str | int], second: dict[str, str | int]
) -> None:
    assert context_bytes(first) != context_bytes(second)


def test_a_bound_context_encodes_like_its_mapping() -> None:
    items = {"table": "patient", "row": 7}
    bound = BoundContext(items)

    assert context_bytes(bound) == context_bytes(items)
    assert "patient" not in repr(bound)


@pytest.mark.parametrize(
    "context",
    [
        {"deleted": True},
        {"row": None},
        {"row": 1.0},
        {"patient": {"id": 1}},
        {"rows": [1, 2]},
        {"blob": b"x"},
    ],
    ids=["bool", "none", "float", "nested mapping", "list", "bytes"],
)
def test_context_bytes_refuse_anything_but_str_and_int_values(context: dict[str, object]) -> None:
    with pytest.raises(EncodingError, match=f"context value for {next(iter(context))!r}"):
        context_bytes(context)  # type: ignore[arg-type]


def test_context_bytes_refuse_a_non_mapping() -> None:
    with pytest.raises(EncodingError, match="must be a mapping"):
        context_bytes([("row", 1)])  # type: ignore[arg-type]


def test_context_bytes_refuse_non_text_keys() -> None:
    with pytest.raises(EncodingError, match="keys must be strings"):
        context_bytes({1: "x"})  # type: ignore[dict-item]
    with pytest.raises(EncodingError, match="keys must be strings"):
        context_bytes({1: "x", "a": "y"})  # type: ignore[dict-item]
