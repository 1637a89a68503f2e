"""Encrypted login packets: a packet opens to its credentials only under the server's key, for
its own challenge, in time; every change to it, and every malformed packet, raises the one
opaque DecryptionError; a packet that opens but carries another challenge's nonce or a stale
timestamp is rejected with a reason for the audit log."""

from __future__ import annotations

import base64
import copy
import json
import os
import pickle  # noqa: TID251 - only to prove that login keys refuse to be pickled
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from carevault.crypto import ConfigurationError, DecryptionError, SecretBytes
from carevault.crypto.errors import RejectedPacketError
from carevault.crypto.packets import (
    ALGORITHM,
    CHALLENGE_TTL,
    MAX_CLOCK_SKEW,
    Challenge,
    LoginCredentials,
    LoginKey,
    LoginPacket,
    b64url,
    make_challenge,
    open_login_packet,
    seal_login_packet,
    seal_payload,
)

NOW = 1_800_000_000
PASSWORD = "Correct-Horse-Battery-9 ünïcødé 🔑"


@pytest.fixture(scope="module")
def key() -> LoginKey:
    return LoginKey.generate()


@pytest.fixture
def challenge(key: LoginKey) -> Challenge:
    return make_challenge(key, now=NOW)


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def open_for(key: LoginKey, packet: Any, challenge: Challenge, now: float = NOW) -> Any:
    return open_login_packet(
        key, packet, challenge.nonce, challenge.cid, expires=challenge.expires, now=now
    )


def flip(text: str, index: int) -> str:
    raw = bytearray(unb64(text))
    raw[index] ^= 0x01
    return b64url(bytes(raw))


# -- the round trip -------------------------------------------------------------------------------


def test_a_sealed_packet_opens_to_its_credentials(key, challenge):
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    credentials = open_for(key, packet, challenge)
    assert credentials == LoginCredentials("doctor1", PASSWORD, challenge.nonce, NOW)


def test_the_client_can_seal_from_the_json_the_server_sent(key, challenge):
    sent = json.loads(json.dumps(challenge.to_dict()))
    packet = seal_login_packet(sent, "patient1", PASSWORD, NOW + 3)
    assert open_for(key, json.dumps(packet), challenge).ts == NOW + 3


def test_the_packet_is_four_base64url_fields_and_shows_no_credential(challenge):
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    assert set(packet) == {"cid", "epk", "iv", "ct"}
    assert packet["cid"] == challenge.cid
    assert len(unb64(packet["epk"])) == 65
    assert unb64(packet["epk"])[0] == 4
    assert len(unb64(packet["iv"])) == 12
    text = json.dumps(packet)
    assert "doctor1" not in text
    assert PASSWORD not in text
    assert "Correct-Horse" not in text


def test_two_packets_for_the_same_credentials_differ(challenge):
    first = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    second = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    assert first["epk"] != second["epk"]
    assert first["ct"] != second["ct"]


def test_the_scheme_is_exactly_the_documented_one(key, challenge):
    """Seal by hand with pyca/cryptography, step by step as docs/crypto.md says (what login.js
    does with WebCrypto), and the server opens it."""
    cid, nonce = unb64(challenge.cid), unb64(challenge.nonce)
    server = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), unb64(challenge.server_key)
    )
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    shared = ephemeral.exchange(ec.ECDH(), server)
    aes_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=nonce, info=b"carevault-login/1" + cid
    ).derive(shared)
    iv = os.urandom(12)
    plaintext = json.dumps(
        {"username": "labtech1", "password": PASSWORD, "nonce": challenge.nonce, "ts": NOW},
        ensure_ascii=False,
    ).encode()  # not canonical on purpose: any JSON object with the four members is accepted
    ct = AESGCM(aes_key).encrypt(iv, plaintext, b"carevault-login/1|" + cid)
    epk = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    packet = {"cid": challenge.cid, "epk": b64url(epk), "iv": b64url(iv), "ct": b64url(ct)}
    assert open_for(key, packet, challenge).username == "labtech1"


# -- the challenge and the key --------------------------------------------------------------------


def test_a_challenge_names_the_scheme_the_key_and_its_lifetime(key, challenge):
    assert challenge.alg == ALGORITHM == "ECDH-P256/HKDF-SHA256/AES-256-GCM"
    assert (challenge.issued, challenge.expires) == (NOW, NOW + CHALLENGE_TTL)
    assert unb64(challenge.server_key) == key.public_bytes()
    assert challenge.key_id == key.key_id
    assert len(unb64(challenge.cid)) == len(unb64(challenge.nonce)) == 16
    assert set(challenge.to_dict()) == {
        "cid",
        "nonce",
        "issued",
        "expires",
        "server_key",
        "key_id",
        "alg",
    }


def test_every_challenge_is_fresh(key):
    made = [make_challenge(key, now=NOW) for _ in range(50)]
    assert len({c.cid for c in made}) == len({c.nonce for c in made}) == 50


@pytest.mark.parametrize(
    "change",
    [
        {"alg": "RSA-OAEP-3072/AES-256-GCM"},
        {"cid": "short"},
        {"nonce": "not base64!"},
        {"server_key": b64url(b"\x02" + bytes(32))},
        {"issued": "1800000000"},
        {"expires": None},
        {"key_id": 7},
    ],
)
def test_a_client_refuses_a_challenge_it_cannot_use(challenge, change):
    with pytest.raises(ConfigurationError):
        seal_login_packet(challenge.to_dict() | change, "doctor1", PASSWORD, NOW)


def test_the_login_key_survives_its_private_bytes(key, challenge):
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    again = LoginKey.from_private_bytes(key.private_bytes())
    assert again.key_id == key.key_id
    assert open_for(again, packet, challenge).username == "doctor1"


def test_the_login_key_is_not_printed_pickled_or_copied(key):
    der = key.private_bytes().expose()
    for text in (repr(key), str(key), f"{key}"):
        assert "redacted" in text
        assert der.hex() not in text
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        copy.copy(key)
    with pytest.raises(TypeError):
        copy.deepcopy(key)


def test_garbage_is_not_a_login_key():
    with pytest.raises(ConfigurationError):
        LoginKey.from_private_bytes(SecretBytes(os.urandom(32)))


def test_credentials_do_not_show_the_password(key, challenge):
    credentials = open_for(key, seal_login_packet(challenge, "doctor1", PASSWORD, NOW), challenge)
    assert PASSWORD not in repr(credentials)
    with pytest.raises(TypeError):
        pickle.dumps(credentials)


# -- tampering: every field -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "index"),
    [
        ("epk", 1),  # x coordinate: almost surely off the curve
        ("epk", 64),  # y coordinate
        ("iv", 0),
        ("iv", 11),
        ("ct", 0),  # first ciphertext byte
        ("ct", -17),  # last ciphertext byte
        ("ct", -1),  # last tag byte
    ],
)
def test_a_flipped_bit_in_any_field_fails(key, challenge, field, index):
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    packet[field] = flip(packet[field], index)
    with pytest.raises(DecryptionError):
        open_for(key, packet, challenge)


def test_another_valid_ephemeral_key_fails(key, challenge):
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    packet["epk"] = b64url(LoginKey.generate().public_bytes())
    with pytest.raises(DecryptionError):
        open_for(key, packet, challenge)


def test_a_packet_moved_to_another_challenge_fails(key, challenge):
    """The attacker rewrites the cid to a challenge of their own: the key and the associated
    data belong to the first challenge, so the packet does not open under the second."""
    other = make_challenge(key, now=NOW)
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    packet["cid"] = other.cid
    with pytest.raises(DecryptionError):
        open_for(key, packet, other)


def test_a_packet_opened_for_another_cid_fails(key, challenge):
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    other = make_challenge(key, now=NOW)
    with pytest.raises(DecryptionError):
        open_login_packet(
            key, packet, challenge.nonce, other.cid, expires=challenge.expires, now=NOW
        )


def test_a_packet_sealed_to_another_key_fails(key, challenge):
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    with pytest.raises(DecryptionError):
        open_for(LoginKey.generate(), packet, challenge)


def test_a_packet_opened_with_another_challenges_nonce_fails(key, challenge):
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    other = make_challenge(key, now=NOW)
    with pytest.raises(DecryptionError):  # the nonce is the key derivation's salt
        open_login_packet(
            key, packet, other.nonce, challenge.cid, expires=challenge.expires, now=NOW
        )


def test_every_failure_has_the_same_message(key, challenge):
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    messages = set()
    for change in ({"ct": flip(packet["ct"], 0)}, {"iv": "AAAA"}, {"epk": packet["iv"]}):
        with pytest.raises(DecryptionError) as caught:
            open_for(key, packet | change, challenge)
        messages.add(str(caught.value))
    assert messages == {"decryption failed"}


# -- foreign nonce, expiry, timestamps ------------------------------------------------------------


def test_a_packet_carrying_another_challenges_nonce_is_rejected_as_foreign(key, challenge):
    """Sealed for challenge A (A's cid and nonce in the key) but carrying challenge B's nonce."""
    other = make_challenge(key, now=NOW)
    payload = {"username": "doctor1", "password": PASSWORD, "nonce": other.nonce, "ts": NOW}
    packet = seal_payload(challenge, payload)
    with pytest.raises(RejectedPacketError) as caught:
        open_for(key, packet, challenge)
    assert caught.value.reason == "foreign_nonce"
    assert str(caught.value) == "login packet rejected"


def test_a_packet_for_an_expired_challenge_is_rejected(key, challenge):
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    assert open_for(key, packet, challenge, now=challenge.expires).username == "doctor1"
    with pytest.raises(RejectedPacketError) as caught:
        open_for(key, packet, challenge, now=challenge.expires + 1)
    assert caught.value.reason == "expired"


@pytest.mark.parametrize(
    "ts",
    [
        NOW - MAX_CLOCK_SKEW - 1,  # stamped long before the server's clock
        NOW + CHALLENGE_TTL + 1,  # after the challenge's expiry
    ],
)
def test_a_packet_with_a_timestamp_out_of_bounds_is_rejected(key, challenge, ts):
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, ts)
    with pytest.raises(RejectedPacketError) as caught:
        open_for(key, packet, challenge)
    assert caught.value.reason == "expired"


def test_a_timestamp_within_the_skew_is_accepted(key, challenge):
    for ts in (NOW - MAX_CLOCK_SKEW, NOW + MAX_CLOCK_SKEW):
        packet = seal_login_packet(challenge, "doctor1", PASSWORD, ts)
        assert open_for(key, packet, challenge).ts == ts


# -- malformed packets ----------------------------------------------------------------------------


def malformed_packets(good: dict[str, str]) -> list[Any]:
    return [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"packet"',
        b"null",
        json.dumps(good)[:-1],
        json.dumps(good)[:-1] + f', "cid": "{good["cid"]}"}}',  # a duplicate member
        {k: v for k, v in good.items() if k != "ct"},
        good | {"extra": "x"},
        good | {"cid": 12},
        good | {"ct": None},
        good | {"cid": good["cid"] + "="},  # padding
        good | {"ct": good["ct"] + "=="},
        good | {"iv": good["iv"].replace("-", "+").replace("_", "/") + "+/"},  # other alphabet
        good | {"epk": " " + good["epk"]},
        good | {"iv": b64url(os.urandom(16))},  # wrong size
        good | {"epk": b64url(b"\x02" + os.urandom(32))},  # compressed point
        good | {"epk": b64url(b"\x04" + bytes(64))},  # not on the curve
        good | {"epk": b64url(b"\x04" + b"\xff" * 64)},  # coordinates beyond the field
        good | {"ct": b64url(os.urandom(16))},  # a tag and nothing else
        good | {"ct": b64url(os.urandom(8192))},  # far more than any credentials
        "x" * 10_000,
    ]


def test_every_malformed_packet_raises_the_one_opaque_error(key, challenge):
    good = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    assert open_for(key, json.dumps(good), challenge).username == "doctor1"
    duplicate = json.loads(malformed_packets(good)[7], object_pairs_hook=list)
    assert [name for name, _ in duplicate].count("cid") == 2
    for bad in malformed_packets(good):
        with pytest.raises(DecryptionError):
            open_for(key, bad, challenge)


def test_base64url_with_stray_bits_is_not_the_same_packet(challenge):
    """22 characters carry 132 bits for a 16-byte cid. A last character that differs only in
    the 4 unused bits decodes to the same bytes with a lenient decoder; here it is refused, so
    one packet has exactly one text."""
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    cid = packet["cid"]
    twin = cid[:-1] + alphabet[alphabet.index(cid[-1]) ^ 1]
    assert unb64(twin) == unb64(cid)
    LoginPacket.parse(packet)
    with pytest.raises(DecryptionError):
        LoginPacket.parse(packet | {"cid": twin})


@pytest.mark.parametrize(
    "plaintext",
    [
        b"not json",
        b"\xff\xfe\xfd",
        b"[1, 2]",
        b'{"username": "doctor1"}',
        b'{"username": "a", "password": "b", "nonce": "%(nonce)s", "ts": 1.8e9}',
        b'{"username": "a", "password": "b", "nonce": "%(nonce)s", "ts": "1800000000"}',
        b'{"username": "a", "password": "b", "nonce": "%(nonce)s", "ts": true}',
        b'{"username": 7, "password": "b", "nonce": "%(nonce)s", "ts": 1800000000}',
        b'{"username": "a", "password": "b\\u0000", "nonce": "%(nonce)s", "ts": 1800000000}',
        b'{"username": "a", "password": "\\ud800", "nonce": "%(nonce)s", "ts": 1800000000}',
        b'{"username": "a", "password": "b", "nonce": "%(nonce)s", "ts": 1800000000, "x": 1}',
        b'{"username": "a", "username": "b", "password": "c", "nonce": "%(nonce)s", "ts": 1}',
        b'{"username": "a", "password": "b", "nonce": "%(nonce)s", "ts": NaN}',
    ],
)
def test_a_well_sealed_packet_with_malformed_contents_fails(key, challenge, plaintext):
    packet = seal_payload(challenge, plaintext % {b"nonce": challenge.nonce.encode()})
    with pytest.raises(DecryptionError):
        open_for(key, packet, challenge)


def test_a_packet_parses_to_its_fields(challenge):
    packet = seal_login_packet(challenge, "doctor1", PASSWORD, NOW)
    parsed = LoginPacket.parse(json.dumps(packet).encode())
    assert parsed.cid == challenge.cid
    assert parsed.to_dict() == packet
    # The ciphertext is left out of the repr (the other fields are random bytes, which may
    # happen to contain the letters "ct": look for the field and its value, not the letters).
    assert "ct=" not in repr(parsed)
    assert repr(parsed.ct) not in repr(parsed)
