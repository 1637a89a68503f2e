"""Blind indexes: exact-match search on encrypted fields (CipherSweet's model).

For each searchable field a per-field key is derived (HKDF) from an index root key; the index of
a value is HMAC-SHA256(field key, normalised value), truncated. Truncation is deliberate: with
few enough bits, many values share an index, so the index alone does not identify a patient
(the caller decrypts the few candidates and compares). Choose ``bits`` so that the expected
number of rows per index value stays above 1 for the table's size.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from ._primitives import hkdf_sha256, hmac_sha256
from .errors import ConfigurationError, WeakKeyError
from .secret import SecretBytes

_INFO = b"carevault-blind-index/1\x00"


def normalize_text(value: str) -> str:
    """Unicode NFKC, trimmed, case-folded: what a person means by 'the same text'."""
    return unicodedata.normalize("NFKC", value).strip().casefold()


class BlindIndex:
    __slots__ = ("_key", "bits", "field", "normalize")

    def __init__(
        self,
        root_key: SecretBytes,
        field: str,
        *,
        bits: int = 32,
        normalize: Callable[[str], str] = normalize_text,
    ) -> None:
        if len(root_key) < 32:
            raise WeakKeyError(f"a blind-index root key needs 32 bytes, got {len(root_key)}")
        if not field:
            raise ConfigurationError("a blind index needs a field name")
        if bits % 8 or not 8 <= bits <= 256:
            raise ConfigurationError(
                f"blind-index bits must be a multiple of 8 in 8..256, got {bits}"
            )
        self.field = field
        self.bits = bits
        self.normalize = normalize
        self._key = hkdf_sha256(
            root_key.expose(), length=32, salt=None, info=_INFO + field.encode()
        )

    def compute(self, value: str) -> str:
        """The hex index of ``value`` for this field."""
        if not isinstance(value, str):
            raise TypeError("blind indexes are computed over text")
        digest = hmac_sha256(self._key, self.normalize(value).encode())
        return digest[: self.bits // 8].hex()

    def __repr__(self) -> str:
        return f"<BlindIndex {self.field} {self.bits} bits>"
