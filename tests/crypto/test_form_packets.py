"""Form packets: the password fields of a form, sealed like a login but for one form (purpose and
path in the associated data). A packet opens only for the form and the challenge it was made
for, never as a login packet, and every change to it raises the one opaque DecryptionError."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from carevault.crypto import ConfigurationError, DecryptionError
from carevault.crypto.errors import RejectedPacketError
from carevault.crypto.packets import (
    MAX_CLOCK_SKEW,
    Challenge,
    LoginKey,
    b64url,
    form_aad,
    make_challenge,
    open_form_packet,
    open_login_packet,
    seal_form_packet,
    seal_payload,
)

NOW = 1_800_000_000
RESET = "/accounts/security/password-reset/MQ/abc-123/"
FIELDS = {"password1": "Sturdy-Lantern-Orbit-42 ü", "password2": "Sturdy-Lantern-Orbit-42 ü"}


@pytest.fixture(scope="module")
def key() -> LoginKey:
    return LoginKey.generate()


@pytest.fixture
def challenge(key: LoginKey) -> Challenge:
    return make_challenge(key, now=NOW)


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def open_for(
    key: LoginKey,
    packet: Any,
    challenge: Challenge,
    *,
    purpose: str = "password-reset",
    binding: str = RESET,
    now: float = NOW,
) -> dict[str, str]:
    return open_form_packet(
        key,
        packet,
        challenge.nonce,
        challenge.cid,
        purpose=purpose,
        binding=binding,
        expires=challenge.expires,
        now=now,
    )


def test_a_form_packet_opens_to_its_fields(key, challenge):
    packet = seal_form_packet(challenge, "password-reset", RESET, FIELDS, NOW)
    assert open_for(key, packet, challenge) == FIELDS


def test_the_packet_shows_no_field_name_or_value(challenge):
    packet = seal_form_packet(challenge, "password-reset", RESET, FIELDS, NOW)
    assert set(packet) == {"cid", "epk", "iv", "ct"}
    text = json.dumps(packet)
    assert "Sturdy" not in text
    assert "password1" not in text


def test_the_scheme_is_exactly_the_documented_one(key, challenge):
    """Seal by hand with pyca primitives, as docs/crypto.md and sealed-form.js describe it."""
    cid, nonce = unb64(challenge.cid), unb64(challenge.nonce)
    server = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), unb64(challenge.server_key)
    )
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    shared = ephemeral.exchange(ec.ECDH(), server)
    aes = HKDF(hashes.SHA256(), 32, salt=nonce, info=b"carevault-form/1" + cid).derive(shared)
    aad = b"carevault-form/1|register|" + cid + b"|/accounts/register/"
    assert form_aad("register", "/accounts/register/", cid) == aad
    iv = os.urandom(12)
    plaintext = json.dumps(
        {"fields": {"password": "x"}, "nonce": challenge.nonce, "ts": NOW}, separators=(",", ":")
    ).encode()
    epk = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    packet = {
        "cid": challenge.cid,
        "epk": b64url(epk),
        "iv": b64url(iv),
        "ct": b64url(AESGCM(aes).encrypt(iv, plaintext, aad)),
    }
    opened = open_for(key, packet, challenge, purpose="register", binding="/accounts/register/")
    assert opened == {"password": "x"}


@pytest.mark.parametrize(
    ("purpose", "binding"),
    [
        ("register", RESET),  # another form at the same path
        ("password-reset", "/accounts/security/password-reset/Mg/other-link/"),  # another link
    ],
)
def test_a_packet_does_not_open_for_another_form(key, challenge, purpose, binding):
    packet = seal_form_packet(challenge, "password-reset", RESET, FIELDS, NOW)
    with pytest.raises(DecryptionError):
        open_for(key, packet, challenge, purpose=purpose, binding=binding)


def test_a_form_packet_is_no_login_packet_and_a_login_packet_no_form_packet(key, challenge):
    form = seal_form_packet(challenge, "register", "/r/", {"password": "x"}, NOW)
    with pytest.raises(DecryptionError):
        open_login_packet(
            key, form, challenge.nonce, challenge.cid, expires=challenge.expires, now=NOW
        )
    login = seal_payload(
        challenge, {"username": "a", "password": "x", "nonce": challenge.nonce, "ts": NOW}
    )
    with pytest.raises(DecryptionError):
        open_for(key, login, challenge, purpose="register", binding="/r/")


@pytest.mark.parametrize("field", ["epk", "iv", "ct"])
def test_a_tampered_packet_fails_opaquely(key, challenge, field):
    packet = seal_form_packet(challenge, "password-reset", RESET, FIELDS, NOW)
    raw = bytearray(unb64(packet[field]))
    raw[-1] ^= 0x01
    with pytest.raises(DecryptionError):
        open_for(key, packet | {field: b64url(bytes(raw))}, challenge)


def test_a_late_packet_or_a_foreign_nonce_is_rejected_with_a_reason(key, challenge):
    packet = seal_form_packet(challenge, "password-reset", RESET, FIELDS, NOW)
    with pytest.raises(RejectedPacketError) as late:
        open_for(key, packet, challenge, now=challenge.expires + 1)
    assert late.value.reason == "expired"
    stale = seal_form_packet(challenge, "password-reset", RESET, FIELDS, NOW - MAX_CLOCK_SKEW - 1)
    with pytest.raises(RejectedPacketError) as old:
        open_for(key, stale, challenge)
    assert old.value.reason == "expired"
    other = make_challenge(key, now=NOW)
    foreign = seal_payload(
        challenge,
        {"fields": FIELDS, "nonce": other.nonce, "ts": NOW},
        form=("password-reset", RESET),
    )
    with pytest.raises(RejectedPacketError) as mixed:
        open_for(key, foreign, challenge)
    assert mixed.value.reason == "foreign_nonce"


@pytest.mark.parametrize(
    "payload",
    [
        {"fields": ["x"], "nonce": "N", "ts": NOW},
        {"fields": {"password": 1}, "nonce": "N", "ts": NOW},
        {"fields": {"password": "a\x00b"}, "nonce": "N", "ts": NOW},
        {"fields": {f"f{i}": "x" for i in range(5)}, "nonce": "N", "ts": NOW},
        {"fields": {}, "nonce": "N"},
        b'{"fields": {"password": "\\udfff"}, "nonce": "N", "ts": 1}',
        b"not json",
    ],
)
def test_a_well_sealed_packet_with_wrong_contents_fails_opaquely(key, challenge, payload):
    if isinstance(payload, dict):
        payload = {k: (challenge.nonce if v == "N" else v) for k, v in payload.items()}
    packet = seal_payload(challenge, payload, form=("password-reset", RESET))
    with pytest.raises(DecryptionError):
        open_for(key, packet, challenge)


@pytest.mark.parametrize("purpose", ["", "Register", "a|b", "x" * 41])
def test_a_purpose_is_a_short_lowercase_word(challenge, purpose):
    with pytest.raises(ConfigurationError):
        seal_form_packet(challenge, purpose, "/r/", {"password": "x"}, NOW)
