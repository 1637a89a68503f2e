"""The encryption suites CareVault offers, by the names the adaptive policy picks from.

All are AEAD. The numeric id is what an envelope header records, so it must never be reused for
a different construction; the name is the human and configuration contract.
"""

from __future__ import annotations

import enum
import re

from .errors import UnknownSuiteError, WeakKeyError


class SuiteKind(enum.Enum):
    SYMMETRIC = "symmetric"
    HYBRID = "hybrid"
    RSA = "rsa"


class Suite(enum.Enum):
    """An AEAD suite. ``level`` orders protection (used for floors); higher never means weaker."""

    AES_128_GCM = ("AES-128-GCM", 0x01, SuiteKind.SYMMETRIC, 1)
    AES_192_GCM = ("AES-192-GCM", 0x02, SuiteKind.SYMMETRIC, 2)
    AES_256_GCM = ("AES-256-GCM", 0x03, SuiteKind.SYMMETRIC, 3)
    HYBRID_X25519_AES_256_GCM = ("HYBRID-X25519-AES-256-GCM", 0x10, SuiteKind.HYBRID, 4)
    HYBRID_P256_AES_256_GCM = ("HYBRID-P256-AES-256-GCM", 0x11, SuiteKind.HYBRID, 4)
    RSA_3072_OAEP_AES_256_GCM = ("RSA-3072-OAEP-AES-256-GCM", 0x20, SuiteKind.RSA, 4)

    def __init__(self, label: str, suite_id: int, kind: SuiteKind, level: int) -> None:
        self.label = label
        self.suite_id = suite_id
        self.kind = kind
        self.level = level

    def __str__(self) -> str:
        return self.label

    @property
    def aes_key_bytes(self) -> int:
        """Key size of the AES-GCM that protects the payload."""
        if self is Suite.AES_128_GCM:
            return 16
        if self is Suite.AES_192_GCM:
            return 24
        return 32

    @property
    def is_symmetric(self) -> bool:
        return self.kind is SuiteKind.SYMMETRIC

    @classmethod
    def parse(cls, name: str | Suite) -> Suite:
        """The suite called ``name``; a clear error for unknown, non-AEAD or weak choices."""
        if isinstance(name, Suite):
            return name
        wanted = name.strip().upper()
        for suite in cls:
            if suite.label == wanted:
                return suite
        _explain_refusal(wanted)
        known = ", ".join(s.label for s in cls)
        raise UnknownSuiteError(f"unknown encryption suite {name!r}; known suites: {known}")

    @classmethod
    def from_id(cls, suite_id: int) -> Suite | None:
        return _BY_ID.get(suite_id)


_BY_ID = {s.suite_id: s for s in Suite}
_NON_AEAD = re.compile(r"\b(CBC|CTR|ECB|CFB|OFB|XTS)\b")
_RSA_BITS = re.compile(r"^RSA-(\d+)")


def _explain_refusal(name: str) -> None:
    if _NON_AEAD.search(name.replace("-", " ")):
        raise UnknownSuiteError(
            f"{name} is not an authenticated (AEAD) mode and is refused: without a tag, "
            "tampering goes unnoticed. Use AES-128/192/256-GCM."
        )
    match = _RSA_BITS.match(name)
    if match and int(match.group(1)) < 3072:
        raise WeakKeyError(
            f"RSA below 3072 bits is refused ({name}); use RSA-3072-OAEP-AES-256-GCM"
        )
