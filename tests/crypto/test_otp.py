"""TOTP (RFC 6238): the published test vectors, the drift window, replay refusal, the key URI."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from carevault.crypto import SecretBytes, otp
from carevault.crypto.otp import InvalidCodeError

# RFC 6238, appendix B: the SHA-1 seed and its 8-digit codes. A 6-digit code is the last six
# digits of the same value (the code is the truncated HMAC modulo 10^digits).
RFC_SEED = SecretBytes(b"12345678901234567890")
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]
NOW = 1_750_000_005.0


@pytest.mark.parametrize(("at", "code"), RFC_VECTORS)
def test_codes_match_the_rfc_6238_vectors(at: int, code: str) -> None:
    assert otp.totp_code(RFC_SEED, at) == code[-6:]


@pytest.mark.parametrize(("at", "code"), RFC_VECTORS)
def test_verify_returns_the_time_step_of_an_rfc_vector(at: int, code: str) -> None:
    assert otp.verify_totp(RFC_SEED, code[-6:], at=at) == at // 30


def test_a_code_one_step_either_side_is_accepted_and_two_steps_is_not() -> None:
    secret = otp.generate_totp_secret()
    step = otp.current_step(NOW)
    assert otp.verify_totp(secret, otp.totp_code(secret, NOW - 30), at=NOW) == step - 1
    assert otp.verify_totp(secret, otp.totp_code(secret, NOW + 30), at=NOW) == step + 1
    for far in (NOW - 60, NOW + 60):
        with pytest.raises(InvalidCodeError):
            otp.verify_totp(secret, otp.totp_code(secret, far), at=NOW)


def test_a_code_of_a_step_already_used_is_refused() -> None:
    secret = otp.generate_totp_secret()
    code = otp.totp_code(secret, NOW)
    step = otp.verify_totp(secret, code, at=NOW)
    with pytest.raises(InvalidCodeError):
        otp.verify_totp(secret, code, at=NOW, after_step=step)
    # The next step's code is still good.
    assert otp.verify_totp(secret, otp.totp_code(secret, NOW + 30), at=NOW + 30, after_step=step)


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "12 34 5x", None])
def test_malformed_codes_are_refused_with_the_same_error(typed: str | None) -> None:
    with pytest.raises(InvalidCodeError, match=r"^the code is not valid$"):
        otp.verify_totp(otp.generate_totp_secret(), typed, at=NOW)  # type: ignore[arg-type]


def test_spaces_and_dashes_as_apps_show_them_are_accepted() -> None:
    secret = otp.generate_totp_secret()
    code = otp.totp_code(secret, NOW)
    assert otp.verify_totp(secret, f"{code[:3]} {code[3:]}", at=NOW)
    assert otp.verify_totp(secret, f"{code[:3]}-{code[3:]}", at=NOW + 30)


def test_secrets_are_160_bits_and_survive_base32() -> None:
    secret = otp.generate_totp_secret()
    assert len(secret) == 20
    text = otp.base32_secret(secret)
    assert len(text) == 32
    assert "=" not in text
    assert otp.secret_from_base32(text.lower()) == secret


def test_the_key_uri_carries_what_authenticator_apps_need() -> None:
    uri = otp.provisioning_uri(RFC_SEED, account="dr grey", issuer="CareVault")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc, parts.path) == ("otpauth", "totp", "/CareVault%3Adr%20grey")
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert query == {
        "secret": otp.base32_secret(RFC_SEED),
        "issuer": "CareVault",
        "algorithm": "SHA1",
        "digits": "6",
        "period": "30",
    }
