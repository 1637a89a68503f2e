"""The envelope format: round trips for every suite, an authenticated header, context binding,
one opaque error for every failure, and official NIST / RFC 9180 vectors for the primitives."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cryptography_vectors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carevault.crypto import (
    BoundContext,
    DecryptionError,
    Header,
    Keyring,
    Suite,
    SuiteKind,
    parse_header,
)
from carevault.crypto import _primitives as primitives

CONTEXT: dict[str, str | int] = {
    "table": "observations",
    "column": "value",
    "row": 42,
    "patient": "p-0001",
}
ALL_SUITES = list(Suite)
FAST_SUITES = [s for s in Suite if s.kind is not SuiteKind.RSA]
VECTORS = Path(cryptography_vectors.__path__[0])


def assert_opaque_failure(decrypt: Callable[..., object], *args: Any) -> None:
    """``decrypt(*args)`` raises the one error of every failed decryption: same type, same
    words, nothing chained that a traceback could show."""
    with pytest.raises(DecryptionError) as excinfo:
        decrypt(*args)
    error = excinfo.value
    assert str(error) == "decryption failed"
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def flip_bit(data: bytes, bit: int) -> bytes:
    edited = bytearray(data)
    edited[bit // 8] ^= 1 << (bit % 8)
    return bytes(edited)


def with_byte(data: bytes, index: int, value: int) -> bytes:
    edited = bytearray(data)
    edited[index] = value
    return bytes(edited)


def duplicate_version_one(ring: Keyring) -> Keyring:
    """A copy of ``ring`` whose v2 holds exactly v1's key material (decrypt-only)."""
    doc = json.loads(ring.to_json())
    (first,) = doc["versions"]
    doc["versions"].append({**first, "version": 2, "state": "decrypt-only"})
    return Keyring.from_json(json.dumps(doc))


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
@pytest.mark.parametrize(
    "plaintext", [b"", b"\x00", b"blood pressure 120/80 mmHg", bytes(range(256)) * 256]
)
def test_every_suite_decrypts_what_it_encrypted(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite, plaintext: bytes
) -> None:
    ring = keyrings_by_suite[suite]
    ciphertext = ring.encrypt(plaintext, CONTEXT)
    assert ring.decrypt(ciphertext, CONTEXT) == plaintext
    assert ring.decrypt(memoryview(ciphertext), dict(CONTEXT)) == plaintext


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
def test_encrypting_twice_gives_different_ciphertexts(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite
) -> None:
    ring = keyrings_by_suite[suite]
    first, second = ring.encrypt(b"same", CONTEXT), ring.encrypt(b"same", CONTEXT)
    assert first != second
    assert first[:8] == second[:8]  # same header, fresh nonce / ephemeral key / content key


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
def test_a_ciphertext_does_not_contain_its_plaintext(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite
) -> None:
    plaintext = b"diagnosis: type 2 diabetes mellitus"
    assert plaintext not in keyrings_by_suite[suite].encrypt(plaintext, CONTEXT)


@pytest.mark.parametrize("suite", FAST_SUITES, ids=str)
@settings(max_examples=50, deadline=None)
@given(
    plaintext=st.binary(max_size=300),
    context=st.dictionaries(
        st.text(max_size=10), st.one_of(st.text(max_size=20), st.integers()), max_size=5
    ),
)
def test_any_plaintext_round_trips_under_any_context(
    keyrings_by_suite: dict[Suite, Keyring],
    suite: Suite,
    plaintext: bytes,
    context: dict[str, str | int],
) -> None:
    ring = keyrings_by_suite[suite]
    assert ring.decrypt(ring.encrypt(plaintext, context), context) == plaintext


def test_a_bound_context_and_the_equal_mapping_are_interchangeable(
    keyrings_by_suite: dict[Suite, Keyring],
) -> None:
    ring = keyrings_by_suite[Suite.AES_256_GCM]
    bound = BoundContext(CONTEXT)
    assert ring.decrypt(ring.encrypt(b"x", bound), CONTEXT) == b"x"
    assert ring.decrypt(ring.encrypt(b"y", CONTEXT), bound) == b"y"
    assert_opaque_failure(ring.decrypt, ring.encrypt(b"z", bound), {**CONTEXT, "row": 43})


# -- the header ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
def test_the_header_carries_format_version_suite_id_and_key_id(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite
) -> None:
    ciphertext = keyrings_by_suite[suite].encrypt(b"x", CONTEXT)
    assert parse_header(ciphertext) == Header(format_version=1, suite=suite, key_id=1)
    # The byte layout is a storage format: "CV" | version | suite id | key id (4 bytes, BE).
    assert ciphertext[:2] == b"CV"
    assert ciphertext[2] == 1
    assert ciphertext[3] == suite.suite_id
    assert int.from_bytes(ciphertext[4:8], "big") == 1


def test_the_header_names_the_key_version_that_wrote_it() -> None:
    ring = Keyring.generate("header-key-id")
    for _ in range(2):
        ring.rotate()
    assert parse_header(ring.encrypt(b"x", CONTEXT)).key_id == 3
    assert Header(1, Suite.AES_128_GCM, 0x01020304).to_bytes() == b"CV\x01\x01\x01\x02\x03\x04"


@pytest.mark.parametrize(
    "data",
    [b"", b"CV", b"CV\x01\x03\x00\x00\x00", b"XX\x01\x03\x00\x00\x00\x01"],
    ids=["empty", "magic-only", "seven-bytes", "wrong-magic"],
)
def test_parse_header_refuses_what_is_not_an_envelope(data: bytes) -> None:
    assert_opaque_failure(parse_header, data)


def test_parse_header_refuses_an_unknown_format_version_or_suite_id() -> None:
    valid = b"CV\x01\x03\x00\x00\x00\x01"
    assert parse_header(valid).suite is Suite.AES_256_GCM
    for version in (0, 2, 255):
        assert_opaque_failure(parse_header, with_byte(valid, 2, version))
    for suite_id in (0, 4, 0xFF):
        assert_opaque_failure(parse_header, with_byte(valid, 3, suite_id))


@pytest.mark.parametrize(
    ("suite", "other"),
    [(suite, other) for suite in ALL_SUITES for other in ALL_SUITES if other is not suite],
    ids=str,
)
def test_a_header_edited_to_name_another_suite_fails_to_decrypt(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite, other: Suite
) -> None:
    ciphertext = keyrings_by_suite[suite].encrypt(b"x", CONTEXT)
    relabelled = with_byte(ciphertext, 3, other.suite_id)
    # Neither the keyring that wrote it nor a keyring of the named suite (same key id 1) opens it.
    assert_opaque_failure(keyrings_by_suite[suite].decrypt, relabelled, CONTEXT)
    assert_opaque_failure(keyrings_by_suite[other].decrypt, relabelled, CONTEXT)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
def test_a_key_id_edited_to_a_version_with_the_same_key_material_still_fails(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite
) -> None:
    # v1 and v2 hold the same key: only the header's place in the associated data tells them
    # apart, so this fails only because the key id is authenticated.
    ring = duplicate_version_one(keyrings_by_suite[suite])
    ciphertext = ring.encrypt(b"x", CONTEXT)
    assert parse_header(ciphertext).key_id == 1
    assert ring.decrypt(ciphertext, CONTEXT) == b"x"
    edited = ciphertext[:4] + (2).to_bytes(4, "big") + ciphertext[8:]
    assert_opaque_failure(ring.decrypt, edited, CONTEXT)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
def test_a_key_id_edited_to_an_unknown_version_fails(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite
) -> None:
    ring = keyrings_by_suite[suite]
    ciphertext = ring.encrypt(b"x", CONTEXT)
    for key_id in (0, 2, 2**32 - 1):
        edited = ciphertext[:4] + key_id.to_bytes(4, "big") + ciphertext[8:]
        assert_opaque_failure(ring.decrypt, edited, CONTEXT)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
def test_a_header_edited_to_another_format_version_or_magic_fails(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite
) -> None:
    ring = keyrings_by_suite[suite]
    ciphertext = ring.encrypt(b"x", CONTEXT)
    for version in (0, 2, 0xFF):
        assert_opaque_failure(ring.decrypt, with_byte(ciphertext, 2, version), CONTEXT)
    for magic in (b"CW", b"cv", b"VC", b"\x00\x00"):
        edited = magic + ciphertext[2:]
        assert_opaque_failure(ring.decrypt, edited, CONTEXT)


# -- tampering: every bit, every length ----------------------------------------------------------


def check_single_bit_flip(ring: Keyring, data: st.DataObject) -> None:
    plaintext = data.draw(st.binary(max_size=64), label="plaintext")
    ciphertext = ring.encrypt(plaintext, CONTEXT)
    bit = data.draw(st.integers(0, len(ciphertext) * 8 - 1), label="bit")
    tampered = flip_bit(ciphertext, bit)
    assert_opaque_failure(ring.decrypt, tampered, CONTEXT)


@pytest.mark.parametrize("suite", FAST_SUITES, ids=str)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_single_bit_flip_anywhere_in_a_ciphertext_is_rejected(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite, data: st.DataObject
) -> None:
    check_single_bit_flip(keyrings_by_suite[suite], data)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_single_bit_flip_anywhere_in_an_rsa_ciphertext_is_rejected(
    keyrings_by_suite: dict[Suite, Keyring], data: st.DataObject
) -> None:
    check_single_bit_flip(keyrings_by_suite[Suite.RSA_3072_OAEP_AES_256_GCM], data)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
def test_every_single_bit_flip_in_the_header_is_rejected(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite
) -> None:
    ring = keyrings_by_suite[suite]
    ciphertext = ring.encrypt(b"x", CONTEXT)
    for bit in range(8 * 8):
        assert_opaque_failure(ring.decrypt, flip_bit(ciphertext, bit), CONTEXT)


def test_flipping_the_bit_x25519_ignores_in_the_ephemeral_key_is_still_rejected(
    keyrings_by_suite: dict[Suite, Keyring],
) -> None:
    # RFC 7748 masks the top bit of an X25519 public key, so the shared secret is unchanged;
    # HPKE still fails because the encapsulated key itself enters the key schedule.
    ring = keyrings_by_suite[Suite.HYBRID_X25519_AES_256_GCM]
    ciphertext = ring.encrypt(b"x", CONTEXT)
    top_bit_of_enc = (8 + 31) * 8 + 7
    assert_opaque_failure(ring.decrypt, flip_bit(ciphertext, top_bit_of_enc), CONTEXT)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
@pytest.mark.parametrize("plaintext", [b"", b"potassium 4.1 mmol/L"], ids=["empty", "text"])
def test_every_truncation_of_a_ciphertext_is_rejected(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite, plaintext: bytes
) -> None:
    ring = keyrings_by_suite[suite]
    ciphertext = ring.encrypt(plaintext, CONTEXT)
    for length in range(len(ciphertext)):
        prefix = ciphertext[:length]
        assert_opaque_failure(ring.decrypt, prefix, CONTEXT)


@pytest.mark.parametrize("suite", FAST_SUITES, ids=str)
@settings(max_examples=30, deadline=None)
@given(extra=st.binary(min_size=1, max_size=32))
def test_bytes_appended_to_a_ciphertext_are_rejected(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite, extra: bytes
) -> None:
    ring = keyrings_by_suite[suite]
    ciphertext = ring.encrypt(b"x", CONTEXT)
    assert_opaque_failure(ring.decrypt, ciphertext + extra, CONTEXT)


# -- context binding -----------------------------------------------------------------------------

OTHER_PLACES: dict[str, Mapping[str, Any]] = {
    "another-row": {**CONTEXT, "row": 43},
    "another-patient": {**CONTEXT, "patient": "p-0002"},
    "another-column": {**CONTEXT, "column": "unit"},
    "another-table": {**CONTEXT, "table": "allergies"},
    "an-extra-key": {**CONTEXT, "tenant": "clinic-2"},
    "a-missing-key": {k: v for k, v in CONTEXT.items() if k != "patient"},
    "row-as-text": {**CONTEXT, "row": "42"},
    "empty": {},
    "keys-and-values-swapped": {"observations": "table", "value": "column", "row": 42},
}


@pytest.mark.parametrize("suite", ALL_SUITES, ids=str)
@pytest.mark.parametrize("place", list(OTHER_PLACES))
def test_a_ciphertext_copied_to_another_place_fails_to_decrypt(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite, place: str
) -> None:
    ring = keyrings_by_suite[suite]
    ciphertext = ring.encrypt(b"HbA1c 7.2%", CONTEXT)
    assert_opaque_failure(ring.decrypt, ciphertext, OTHER_PLACES[place])


def test_the_order_of_context_keys_does_not_matter(
    keyrings_by_suite: dict[Suite, Keyring],
) -> None:
    ring = keyrings_by_suite[Suite.AES_256_GCM]
    reordered = dict(reversed(list(CONTEXT.items())))
    assert ring.decrypt(ring.encrypt(b"x", CONTEXT), reordered) == b"x"


contexts = st.dictionaries(
    st.text(max_size=6), st.one_of(st.text(max_size=6), st.integers(-3, 3)), max_size=4
)


@pytest.mark.parametrize("suite", FAST_SUITES, ids=str)
@settings(max_examples=60, deadline=None)
@given(written=contexts, read=contexts)
def test_a_ciphertext_opens_only_under_the_context_it_was_written_for(
    keyrings_by_suite: dict[Suite, Keyring],
    suite: Suite,
    written: dict[str, str | int],
    read: dict[str, str | int],
) -> None:
    ring = keyrings_by_suite[suite]
    ciphertext = ring.encrypt(b"x", written)
    if read == written:
        assert ring.decrypt(ciphertext, read) == b"x"
    else:
        assert_opaque_failure(ring.decrypt, ciphertext, read)


@pytest.mark.parametrize("suite", FAST_SUITES, ids=str)
def test_a_ciphertext_does_not_open_under_another_key_of_the_same_suite(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite
) -> None:
    other = Keyring.generate("another-patient", suite)
    ciphertext = keyrings_by_suite[suite].encrypt(b"x", CONTEXT)
    assert_opaque_failure(other.decrypt, ciphertext, CONTEXT)


# -- official test vectors -----------------------------------------------------------------------


def read_rsp(path: Path) -> list[dict[str, Any]]:
    """The records of a NIST CAVP .rsp file, each with the [section] parameters it sits under."""
    section: dict[str, int] = {}
    records: list[dict[str, Any]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            name, _, value = line[1:-1].partition("=")
            section[name.strip()] = int(value)
            continue
        name, _, value = (part.strip() for part in line.partition("="))
        if name == "Count":
            records.append({**section, "Count": int(value)})
        else:
            records[-1][name] = value
    return records


@pytest.mark.parametrize("key_bits", [128, 192, 256])
def test_aes_gcm_matches_every_nist_vector_with_96_bit_nonces_and_128_bit_tags(
    key_bits: int,
) -> None:
    path = VECTORS / "ciphers" / "AES" / "GCM" / f"gcmEncryptExtIV{key_bits}.rsp"
    records = [r for r in read_rsp(path) if r["IVlen"] == 96 and r["Taglen"] == 128]
    assert len(records) == 375  # the parser read every section of the file
    for record in records:
        assert record["Keylen"] == key_bits
        key, iv, pt, aad, ct, tag = (
            bytes.fromhex(record[name]) for name in ("Key", "IV", "PT", "AAD", "CT", "Tag")
        )
        assert len(pt) * 8 == record["PTlen"]
        assert len(aad) * 8 == record["AADlen"]
        assert primitives.aes_gcm_test_only_encrypt(key, iv, pt, aad) == ct + tag
        aead = primitives.AesGcm(key)
        assert aead.open(iv + ct + tag, aad) == pt
        assert_opaque_failure(aead.open, iv + ct + flip_bit(tag, 0), aad)


def hpke_vectors(kem_id: int) -> list[dict[str, Any]]:
    vectors = json.loads((VECTORS / "HPKE" / "test-vectors.json").read_text())
    return [
        v
        for v in vectors
        if v["mode"] == 0 and v["kem_id"] == kem_id and v["kdf_id"] == 1 and v["aead_id"] == 2
    ]


def p256_pkcs8(scalar: bytes) -> bytes:
    # Test-only key conversion: the vector gives a raw scalar, CareVault loads PKCS#8 DER.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(("kem", "kem_id"), [("X25519", 0x20), ("P-256", 0x10)])
def test_hpke_opens_a_ciphertext_built_from_the_rfc_9180_key_schedule(
    kem: primitives.KemName, kem_id: int
) -> None:
    # Every RFC 9180 vector encrypts with a non-empty aad, and the single-shot HPKE API CareVault
    # uses has none (it seals with sequence number 0 and empty aad), so no vector ciphertext can
    # be opened as is. What can be checked: from skR, enc and info, the recipient side derives
    # the vector's key and base nonce, so a ciphertext sealed under them with empty aad opens.
    (vector,) = hpke_vectors(kem_id)
    sk_r, pk_r, enc, info, key, base_nonce = (
        bytes.fromhex(vector[name]) for name in ("skRm", "pkRm", "enc", "info", "key", "base_nonce")
    )
    first = vector["encryptions"][0]
    pt, aad, ct = (bytes.fromhex(first[name]) for name in ("pt", "aad", "ct"))
    # The vector's key and base nonce are what produced its first official ciphertext ...
    assert primitives.aes_gcm_test_only_encrypt(key, base_nonce, pt, aad) == ct
    # ... and CareVault's recipient key reproduces the vector's public key and key schedule.
    recipient = primitives.HpkePrivateKey.from_bytes(
        kem, sk_r if kem == "X25519" else p256_pkcs8(sk_r)
    )
    assert recipient.public_key().public_bytes() == pk_r
    sealed = enc + primitives.aes_gcm_test_only_encrypt(key, base_nonce, pt, b"")
    assert recipient.open(sealed, info) == pt
    assert_opaque_failure(recipient.open, sealed, info + b"!")
