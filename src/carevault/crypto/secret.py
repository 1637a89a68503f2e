"""A container for secret key material that refuses to leak by accident.

Keys end up in reprs, log lines, exception messages, debug pages and pickles far more often than
they are stolen by clever attacks. :class:`SecretBytes` makes each of those accidents fail loudly:
``repr``/``str``/``format`` show only the length, pickling and copying raise, and equality is
constant-time. The bytes are reachable only through :meth:`SecretBytes.expose`, whose name makes
every use easy to find in review.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, NoReturn


class SecretBytes:
    __slots__ = ("__value",)

    def __init__(self, value: bytes | bytearray | memoryview) -> None:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError("SecretBytes holds bytes only")
        self.__value = bytes(value)

    @classmethod
    def random(cls, length: int) -> SecretBytes:
        return cls(secrets.token_bytes(length))

    def expose(self) -> bytes:
        """The raw bytes, for the crypto core's own use. Never log or store the result."""
        return self.__value

    def __len__(self) -> int:
        return len(self.__value)

    def __repr__(self) -> str:
        return f"<SecretBytes: {len(self.__value)} bytes, redacted>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bytes__(self) -> NoReturn:
        # bytes(secret) would silently unwrap it; make callers say expose() instead.
        raise TypeError("secret bytes are not converted implicitly; call expose()")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretBytes):
            return NotImplemented
        return hmac.compare_digest(self.__value, other.__value)

    # A value-derived hash would be an oracle on the key; identity hashing would break the
    # eq/hash contract. So: unhashable.
    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("secret key material cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("secret key material cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("secret key material is not copied")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        raise TypeError("secret key material is not copied")
