"""SecretBytes: every accidental way of leaking key material fails loudly."""

from __future__ import annotations

import copy
import logging
import pickle  # noqa: TID251 - only to prove that secrets refuse to be pickled

import pytest

from carevault.crypto import SecretBytes

RAW = bytes.fromhex("00112233445566778899aabbccddeeff")


@pytest.fixture
def secret() -> SecretBytes:
    return SecretBytes(RAW)


def leaks(text: str) -> bool:
    """Whether ``text`` shows the secret in any of the usual spellings."""
    return any(form in text for form in (RAW.hex(), RAW.hex().upper(), repr(RAW), str(list(RAW))))


def test_repr_and_str_show_only_the_length(secret: SecretBytes) -> None:
    assert repr(secret) == str(secret) == "<SecretBytes: 16 bytes, redacted>"


@pytest.mark.parametrize(
    "render",
    [
        repr,
        str,
        format,
        lambda s: f"{s}",
        lambda s: f"{s!r}",
        lambda s: f"{s:>80}",
        lambda s: f"{s:x}",
        lambda s: "%s %r" % (s, s),  # noqa: UP031 - the old style is exactly what we test
        lambda s: "{}".format(s),  # noqa: UP032
        lambda s: repr([s, {"key": s}]),
    ],
)
def test_no_rendering_shows_the_bytes(secret: SecretBytes, render: object) -> None:
    text = render(secret)  # type: ignore[operator]

    assert "redacted" in text
    assert not leaks(text)


def test_a_logged_secret_shows_no_bytes(
    secret: SecretBytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("carevault.test").info("loaded key %s", secret)

    assert "redacted" in caplog.text
    assert not leaks(caplog.text)


def test_an_exception_message_holding_a_secret_shows_no_bytes(secret: SecretBytes) -> None:
    error = ValueError("bad key", secret)
    assert not leaks(str(error))
    assert not leaks(repr(error))


def test_bytes_of_a_secret_raises(secret: SecretBytes) -> None:
    with pytest.raises(TypeError, match="expose"):
        bytes(secret)


def test_expose_returns_the_bytes(secret: SecretBytes) -> None:
    assert secret.expose() == RAW
    assert len(secret) == 16


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_secret_cannot_be_pickled(secret: SecretBytes, protocol: int) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret, protocol=protocol)


def test_a_secret_cannot_be_copied(secret: SecretBytes) -> None:
    with pytest.raises(TypeError, match="not copied"):
        copy.copy(secret)
    with pytest.raises(TypeError, match="not copied"):
        copy.deepcopy(secret)
    with pytest.raises(TypeError, match="not copied"):
        copy.deepcopy({"key": secret})


def test_equal_values_are_equal_and_different_values_are_not(secret: SecretBytes) -> None:
    assert secret == SecretBytes(bytearray(RAW))
    assert secret == SecretBytes(memoryview(RAW))
    assert secret != SecretBytes(RAW[:-1] + b"\x00")
    assert secret != SecretBytes(RAW[:-1])
    assert SecretBytes(b"") == SecretBytes(b"")


def test_a_secret_never_equals_its_raw_bytes(secret: SecretBytes) -> None:
    # Comparing with bytes would invite non-constant-time comparisons elsewhere.
    assert secret != RAW
    assert (secret == RAW) is False


def test_a_secret_is_unhashable(secret: SecretBytes) -> None:
    with pytest.raises(TypeError, match="unhashable"):
        hash(secret)
    with pytest.raises(TypeError):
        {secret}  # noqa: B018 - building the set is the point


def test_a_secret_copies_its_input(secret: SecretBytes) -> None:
    source = bytearray(RAW)
    held = SecretBytes(source)
    source[0] ^= 0xFF

    assert held.expose() == RAW


@pytest.mark.parametrize("value", ["00112233", 1234, None, [0, 1]])
def test_only_bytes_are_held(value: object) -> None:
    with pytest.raises(TypeError, match="bytes only"):
        SecretBytes(value)  # type: ignore[arg-type]


def test_random_secrets_have_the_length_asked_and_differ() -> None:
    first, second = SecretBytes.random(32), SecretBytes.random(32)

    assert len(first) == len(second) == 32
    assert first != second
