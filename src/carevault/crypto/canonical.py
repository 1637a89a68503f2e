"""One canonical byte encoding for records and contexts, so that signatures and associated data
mean exactly one thing.

Records are encoded as JSON with keys sorted by code point, no insignificant white space and
UTF-8. This matches RFC 8785 except for key order between characters above U+FFFF and those in
U+E000..U+FFFF (RFC 8785 sorts by UTF-16 units); no CareVault record key uses such characters.
Contexts (associated data) use a faster length-prefixed encoding, below. Floats are refused:
their text form is not canonical across languages, and clinical values that need decimals are
carried as strings (``"7.25"``) by the caller, which also keeps the unit of precision explicit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import EncodingError


def _check_text(text: str, path: str) -> None:
    # A lone surrogate (e.g. from surrogateescape decoding) has no UTF-8 form; without this
    # check it escapes as a UnicodeEncodeError instead of the documented EncodingError.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodingError(f"{path}: text is not valid Unicode (lone surrogate)") from None


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        _check_text(value, path)
        return
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:
            raise EncodingError(f"{path}: integers beyond 2^53 are not portable; use a string")
        return
    if isinstance(value, float):
        raise EncodingError(f"{path}: floats have no canonical form; pass decimals as strings")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodingError(f"{path}: keys must be strings, got {type(key).__name__}")
            _check_text(key, path)
            _check(item, f"{path}.{key}")
        return
    raise EncodingError(f"{path}: {type(value).__name__} cannot be encoded canonically")


def canonical_bytes(value: Any) -> bytes:
    """The canonical encoding of ``value`` (dicts, lists, str, int, bool, None)."""
    _check(value, "record")
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


class BoundContext:
    """A context encoded once, for callers that encrypt and decrypt the same place repeatedly
    (e.g. every field of one row): the encoding is the hot part of a small-field encryption."""

    __slots__ = ("encoded", "items")

    def __init__(self, items: Mapping[str, str | int]) -> None:
        self.items: dict[str, str | int] = dict(items)
        self.encoded = _encode_context(self.items)

    def __repr__(self) -> str:
        return f"<BoundContext {sorted(self.items)}>"


def _encode_context(context: Mapping[str, str | int]) -> bytes:
    # Length-prefixed and type-tagged, so no two different contexts share an encoding:
    # "<len>:<key>s<len>:<text>" for text, "<len>:<key>i<digits>;" for integers.
    try:
        keys = sorted(context)
    except TypeError:
        raise EncodingError("context keys must be strings") from None
    parts = []
    for key in keys:
        value = context[key]
        if type(key) is not str:
            raise EncodingError("context keys must be strings")
        if type(value) is str:
            parts.append(f"{len(key)}:{key}s{len(value)}:{value}")
        elif type(value) is int:
            parts.append(f"{len(key)}:{key}i{value};")
        else:
            raise EncodingError(f"context value for {key!r} must be str or int")
    return "".join(parts).encode("utf-8", "surrogatepass")


# The encoded part of each field name, per field key: column names are few and fixed in code,
# and formatting one is a good part of a field's cost. Bounded, in case names ever vary.
_FIELD_PARTS: dict[str, dict[str, bytes]] = {}
_FIELD_PARTS_MAX = 4096


class RowContext:
    """The context of one row, encoded once, for the fields sealed in it: ``encode(column)`` is
    exactly ``context_bytes({**items, "column": column})`` (same bytes, so either API opens what
    the other sealed), at the cost of one small format and two concatenations per field.

    The encoding sorts keys, so the row's keys that sort before the field key are encoded once
    as a prefix and those after it as a suffix; the field's own part is length-prefixed and
    type-tagged like every other, so no two (row, field) pairs share an encoding.
    """

    __slots__ = ("_head", "_parts", "_prefix", "_suffix", "items")

    def __init__(self, items: Mapping[str, str | int], *, field_key: str = "column") -> None:
        if not isinstance(items, Mapping):
            raise EncodingError("a row context must be a mapping of names to str or int")
        if type(field_key) is not str:
            raise EncodingError("context keys must be strings")
        self.items: dict[str, str | int] = dict(items)
        if field_key in self.items:
            raise EncodingError(f"a row context must not contain its field key {field_key!r}")
        # One pass in key order, the same parts as _encode_context (which the tests compare);
        # inlined because building one per row is part of every row's cost.
        try:
            keys = sorted(self.items)
        except TypeError:
            raise EncodingError("context keys must be strings") from None
        prefix: list[str] = []
        suffix: list[str] = []
        for key in keys:
            value = self.items[key]
            if type(key) is not str:
                raise EncodingError("context keys must be strings")
            if type(value) is str:
                part = f"{len(key)}:{key}s{len(value)}:{value}"
            elif type(value) is int:
                part = f"{len(key)}:{key}i{value};"
            else:
                raise EncodingError(f"context value for {key!r} must be str or int")
            (prefix if key < field_key else suffix).append(part)
        self._prefix = "".join(prefix).encode("utf-8", "surrogatepass")
        self._suffix = "".join(suffix).encode("utf-8", "surrogatepass")
        self._head = f"{len(field_key)}:{field_key}s"
        self._parts = _FIELD_PARTS.setdefault(field_key, {})

    def encode(self, field: str) -> bytes:
        """The canonical encoding of this row's context with ``field`` as its field key."""
        if type(field) is not str:  # first: no str subclass may meet a cached name
            raise EncodingError("a field name must be str")
        part = self._parts.get(field)
        if part is None:
            part = f"{self._head}{len(field)}:{field}".encode("utf-8", "surrogatepass")
            if len(self._parts) < _FIELD_PARTS_MAX:
                self._parts[field] = part
        return self._prefix + part + self._suffix

    def __repr__(self) -> str:
        return f"<RowContext {sorted(self.items)}>"


# An associated-data context: where a ciphertext lives (table, column, row, patient, ...).
Context = Mapping[str, str | int] | BoundContext


def context_bytes(context: Context) -> bytes:
    """The canonical encoding of an associated-data context; values must be str or int."""
    if type(context) is BoundContext:
        return context.encoded
    if not isinstance(context, Mapping):
        raise EncodingError("an encryption context must be a mapping of names to str or int")
    return _encode_context(context)
