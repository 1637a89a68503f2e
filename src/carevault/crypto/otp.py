"""Time-based one-time passwords (RFC 6238) for the second factor.

The parameters are the ones every authenticator app understands without being told: HMAC-SHA-1,
6 digits, 30-second steps, a 20-byte (160-bit) secret as RFC 4226 recommends. A code is accepted
one step either side of the server's clock (phones drift), and only for a step later than the
last one accepted (``after_step``), so a code seen over someone's shoulder cannot be used again.

Like every ``verify`` in the crypto core, :func:`verify_totp` raises on failure and never returns
a bool; what it returns on success is the time step the code belonged to, for the caller to store.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, urlencode

from ._primitives import totp_generate, totp_matching_step
from .errors import CryptoError
from .secret import SecretBytes

TOTP_SECRET_BYTES = 20
TOTP_DIGITS = 6
TOTP_TIME_STEP = 30
TOTP_WINDOW = 1

_CODE = re.compile(r"^[0-9]{6}$")


class InvalidCodeError(CryptoError):
    """A one-time code did not match (wrong, expired, malformed or already used)."""

    code = "invalid_code"

    def __init__(self) -> None:
        super().__init__("the code is not valid")


def generate_totp_secret() -> SecretBytes:
    return SecretBytes.random(TOTP_SECRET_BYTES)


def normalize_code(code: str) -> str:
    """Apps show "123 456"; people type it with the space, or with a dash."""
    return re.sub(r"[\s-]", "", str(code or ""))


def current_step(at: float) -> int:
    return int(at // TOTP_TIME_STEP)


def totp_code(secret: SecretBytes, at: float) -> str:
    """The code for the time ``at`` (what the user's app shows; tests use it)."""
    return totp_generate(secret.expose(), at, digits=TOTP_DIGITS, time_step=TOTP_TIME_STEP)


def verify_totp(
    secret: SecretBytes, code: str, *, at: float, after_step: int = -1, window: int = TOTP_WINDOW
) -> int:
    """The time step ``code`` belongs to, if it is within ``window`` steps of ``at`` and later
    than ``after_step``; otherwise :class:`InvalidCodeError`."""
    code = normalize_code(code)
    if not _CODE.match(code):
        raise InvalidCodeError()
    step = totp_matching_step(
        secret.expose(),
        code,
        at,
        digits=TOTP_DIGITS,
        time_step=TOTP_TIME_STEP,
        window=window,
    )
    if step is None or step <= after_step:
        raise InvalidCodeError()
    return step


def base32_secret(secret: SecretBytes) -> str:
    """The secret as authenticator apps take it when typed in (RFC 4648 base32, no padding)."""
    return base64.b32encode(secret.expose()).decode().rstrip("=")


def secret_from_base32(text: str) -> SecretBytes:
    cleaned = re.sub(r"\s", "", text).upper()
    return SecretBytes(base64.b32decode(cleaned + "=" * (-len(cleaned) % 8)))


def provisioning_uri(secret: SecretBytes, *, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI a QR code carries (Google Authenticator's key URI format)."""
    label = quote(f"{issuer}:{account}", safe="")
    query = urlencode(
        {
            "secret": base32_secret(secret),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": TOTP_DIGITS,
            "period": TOTP_TIME_STEP,
        }
    )
    return f"otpauth://totp/{label}?{query}"
