"""Typed errors of the crypto core.

Two families, on purpose:

* :class:`DecryptionError` is the *one* error every failed decryption raises, whatever went
  wrong (bad tag, edited header, unknown or destroyed key, wrong associated data, truncation).
  Its message never says which, so an attacker probing ciphertexts learns nothing from it.
* :class:`ConfigurationError` and its subclasses are programmer or operator mistakes (an unknown
  suite, a short key, weak RSA). They say exactly what is wrong, because the person who reads
  them is the one who can fix it, and they never contain key material or plaintext.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every error the crypto core raises."""

    code = "crypto_error"


class DecryptionError(CryptoError):
    """Decryption failed. Deliberately says nothing more."""

    code = "decryption_failed"

    def __init__(self) -> None:
        super().__init__("decryption failed")


class RejectedPacketError(CryptoError):
    """A login packet opened and authenticated, but is not valid for its challenge now.

    ``reason`` says why ("foreign_nonce": it carries another challenge's nonce; "expired": the
    challenge expired or the packet's timestamp is out of bounds) for the server's audit log
    only. The message is the same for every reason, and a server answers it exactly as it
    answers a :class:`DecryptionError`.
    """

    code = "packet_rejected"

    def __init__(self, reason: str) -> None:
        super().__init__("login packet rejected")
        self.reason = reason


class InvalidSignatureError(CryptoError):
    """A signature did not verify against the record and the key."""

    code = "invalid_signature"

    def __init__(self) -> None:
        super().__init__("signature verification failed")


class ConfigurationError(CryptoError):
    """A key, suite or parameter is unusable as given; the message says why."""

    code = "crypto_configuration"


class UnknownSuiteError(ConfigurationError):
    code = "unknown_suite"


class WeakKeyError(ConfigurationError):
    """A key is shorter or weaker than the suite requires (e.g. RSA below 3072 bits)."""

    code = "weak_key"


class KeyStateError(ConfigurationError):
    """The key exists but its state forbids the operation (e.g. encrypt with a retired key)."""

    code = "key_state"


class NonceBudgetExhaustedError(KeyStateError):
    """A GCM key has used its nonce budget and must be rotated before it encrypts again."""

    code = "nonce_budget_exhausted"


class KeyProviderError(ConfigurationError):
    """The master key could not be loaded or stored by its provider."""

    code = "key_provider"


class ShareError(ConfigurationError):
    """Shamir shares are malformed, inconsistent, too few, or do not recover the secret."""

    code = "shares"


class EncodingError(ConfigurationError):
    """A record cannot be encoded canonically (e.g. it holds a float or a non-string key)."""

    code = "encoding"
