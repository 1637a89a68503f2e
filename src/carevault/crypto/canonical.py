"""One canonical byte encoding for records and contexts, so that signatures and associated data
mean exactly one thing.

The encoding is JSON with sorted keys, no insignificant white space and UTF-8 (the intersection
of RFC 8785 and plain ``json`` for the types allowed here). Floats are refused: their text form
is not canonical across languages, and clinical values that need decimals are carried as
strings (``"7.25"``) by the caller, which also keeps the unit of precision explicit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import EncodingError

# An associated-data context: where a ciphertext lives (table, column, row, patient, ...).
Context = Mapping[str, str | int]


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | str):
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
            _check(item, f"{path}.{key}")
        return
    raise EncodingError(f"{path}: {type(value).__name__} cannot be encoded canonically")


def canonical_bytes(value: Any) -> bytes:
    """The canonical encoding of ``value`` (dicts, lists, str, int, bool, None)."""
    _check(value, "record")
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def context_bytes(context: Context) -> bytes:
    """The canonical encoding of an associated-data context; keys and values must be scalars."""
    if not isinstance(context, Mapping):
        raise EncodingError("an encryption context must be a mapping of names to str or int")
    for key, value in context.items():
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise EncodingError(f"context value for {key!r} must be str or int")
    return canonical_bytes(dict(context))
