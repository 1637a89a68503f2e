"""Record signatures: every algorithm signs and verifies, and every change to the record, the
purpose, the key or the signature makes verification raise."""

from __future__ import annotations

import copy
import pickle  # noqa: TID251 - only to prove that signing keys refuse to be pickled
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from carevault.crypto import (
    ConfigurationError,
    EncodingError,
    InvalidSignatureError,
    SecretBytes,
    Signature,
    SignatureAlgorithm,
    SigningKey,
    VerifyKey,
    WeakKeyError,
    _primitives,
    canonical_bytes,
)

ALGORITHMS = list(SignatureAlgorithm)
PURPOSE = "prescription"
RECORD = {
    "patient": "p-123",
    "drug": "amoxicillin",
    "dose": "500 mg",
    "times_per_day": 3,
    "notes": "après les repas",
    "refills": [],
}

_keys: dict[tuple[SignatureAlgorithm, int], SigningKey] = {}


@pytest.fixture(scope="module")
def signing_keys() -> Callable[[SignatureAlgorithm, int], SigningKey]:
    """Key number ``n`` of an algorithm, generated once per module (RSA-3072 is slow)."""

    def get(algorithm: SignatureAlgorithm, n: int = 0) -> SigningKey:
        if (algorithm, n) not in _keys:
            _keys[algorithm, n] = SigningKey.generate(algorithm)
        return _keys[algorithm, n]

    return get


@pytest.fixture(params=ALGORITHMS, ids=lambda a: a.value)
def key(
    request: pytest.FixtureRequest, signing_keys: Callable[[SignatureAlgorithm, int], SigningKey]
) -> SigningKey:
    return signing_keys(request.param, 0)


@pytest.fixture
def signature(key: SigningKey) -> Signature:
    return key.sign(RECORD, purpose=PURPOSE)


def assert_invalid(
    key: SigningKey | VerifyKey, record: object, sig: Signature, purpose: str
) -> None:
    verify_key = key.verify_key if isinstance(key, SigningKey) else key
    with pytest.raises(InvalidSignatureError):
        verify_key.verify(record, sig, purpose=purpose)


# -- round trips ---------------------------------------------------------------------------------


def test_a_signature_verifies_and_verify_returns_nothing(
    key: SigningKey, signature: Signature
) -> None:
    assert key.verify_key.verify(RECORD, signature, purpose=PURPOSE) is None


def test_a_signature_names_its_algorithm_and_signer(key: SigningKey, signature: Signature) -> None:
    assert signature.algorithm is key.algorithm
    assert signature.key_id == key.key_id == key.verify_key.key_id
    assert len(key.key_id) == 16


def test_the_key_order_of_a_record_does_not_matter(key: SigningKey, signature: Signature) -> None:
    reordered = dict(reversed(list(RECORD.items())))
    assert list(reordered) != list(RECORD)

    key.verify_key.verify(reordered, signature, purpose=PURPOSE)


def test_the_text_form_of_a_signature_round_trips(key: SigningKey, signature: Signature) -> None:
    text = signature.to_text()

    assert text.startswith(f"cvsig1.{key.algorithm.value}.{key.key_id}.")
    assert Signature.from_text(text) == signature
    key.verify_key.verify(RECORD, Signature.from_text(text), purpose=PURPOSE)


def test_a_private_key_round_trips_as_secret_bytes(key: SigningKey, signature: Signature) -> None:
    exported = key.private_bytes()
    restored = SigningKey.from_private_bytes(key.algorithm.value, exported)

    assert isinstance(exported, SecretBytes)
    assert restored.key_id == key.key_id
    key.verify_key.verify(RECORD, restored.sign(RECORD, purpose=PURPOSE), purpose=PURPOSE)
    restored.verify_key.verify(RECORD, signature, purpose=PURPOSE)


def test_a_verify_key_loaded_from_its_public_bytes_verifies(
    key: SigningKey, signature: Signature
) -> None:
    loaded = VerifyKey.from_bytes(key.algorithm, key.verify_key.public_bytes())

    assert loaded.key_id == key.key_id
    loaded.verify(RECORD, signature, purpose=PURPOSE)


def test_the_algorithm_name_is_parsed_case_insensitively() -> None:
    assert SignatureAlgorithm.parse(" ecdsa-p256-sha256 ") is SignatureAlgorithm.ECDSA_P256_SHA256
    with pytest.raises(ConfigurationError, match="unknown signature algorithm 'DSA'"):
        SignatureAlgorithm.parse("DSA")


# -- what must not verify -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "changed",
    [
        {**RECORD, "dose": "5000 mg"},
        {**RECORD, "times_per_day": 4},
        {**RECORD, "refills": [None]},
        {**RECORD, "notes": "apres les repas"},
    ],
    ids=["dose", "times per day", "refills", "accent"],
)
def test_a_changed_field_does_not_verify(
    key: SigningKey, signature: Signature, changed: dict[str, object]
) -> None:
    assert_invalid(key, changed, signature, PURPOSE)


def test_an_added_field_does_not_verify(key: SigningKey, signature: Signature) -> None:
    assert_invalid(key, {**RECORD, "substitution_allowed": True}, signature, PURPOSE)


def test_a_removed_field_does_not_verify(key: SigningKey, signature: Signature) -> None:
    assert_invalid(key, {k: v for k, v in RECORD.items() if k != "refills"}, signature, PURPOSE)


def test_a_signature_for_another_purpose_does_not_verify(
    key: SigningKey, signature: Signature
) -> None:
    assert_invalid(key, RECORD, signature, "lab-report")
    assert_invalid(key, RECORD, signature, PURPOSE + " ")


def test_another_key_of_the_same_algorithm_does_not_verify(
    key: SigningKey,
    signature: Signature,
    signing_keys: Callable[[SignatureAlgorithm, int], SigningKey],
) -> None:
    other = signing_keys(key.algorithm, 1)
    assert other.key_id != key.key_id

    assert_invalid(other, RECORD, signature, PURPOSE)
    # Even when the signature claims the other key's id, the value itself does not verify.
    relabelled = Signature(signature.algorithm, other.key_id, signature.value)
    assert_invalid(other, RECORD, relabelled, PURPOSE)


def test_a_signature_claiming_another_algorithm_does_not_verify(
    key: SigningKey, signature: Signature
) -> None:
    for algorithm in ALGORITHMS:
        if algorithm is not key.algorithm:
            relabelled = Signature(algorithm, signature.key_id, signature.value)
            assert_invalid(key, RECORD, relabelled, PURPOSE)


def test_a_signature_with_any_flipped_bit_does_not_verify(
    key: SigningKey, signature: Signature
) -> None:
    for offset in range(len(signature.value)):
        value = bytearray(signature.value)
        value[offset] ^= 1 << (offset % 8)
        assert_invalid(key, RECORD, Signature(key.algorithm, key.key_id, bytes(value)), PURPOSE)


@pytest.mark.parametrize("cut", ["empty", "shortened", "extended"])
def test_a_signature_of_the_wrong_length_does_not_verify(
    key: SigningKey, signature: Signature, cut: str
) -> None:
    value = {
        "empty": b"",
        "shortened": signature.value[:-1],
        "extended": signature.value + b"\x00",
    }[cut]
    assert_invalid(key, RECORD, Signature(key.algorithm, key.key_id, value), PURPOSE)


def test_a_record_signature_is_not_a_raw_signature_over_the_record(
    key: SigningKey, signature: Signature
) -> None:
    # The domain and purpose prefix: the same key signing raw bytes elsewhere cannot be used
    # to forge, or be mistaken for, a record signature.
    public = _primitives.PublicSigningKey.from_bytes(
        key.algorithm.value, key.verify_key.public_bytes()
    )
    with pytest.raises(InvalidSignatureError):
        public.verify(canonical_bytes(RECORD), signature.value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "cvsig1",
        "cvsig1.Ed25519.0011223344556677",
        "cvsig1.Ed25519.0011223344556677.AAAA.AAAA",
        "cvsig2.Ed25519.0011223344556677.AAAA",
        "cvsig1.DSA-SHA1.0011223344556677.AAAA",
        "cvsig1.Ed25519.0011223344556677.A",
        "cvsig1.Ed25519.0011223344556677.AAAAé",
    ],
)
def test_a_malformed_signature_text_is_an_invalid_signature(text: str) -> None:
    with pytest.raises(InvalidSignatureError):
        Signature.from_text(text)


def test_a_missing_signature_is_an_invalid_signature() -> None:
    # A NULL column read back as None fails like a forged signature, not with an AttributeError.
    with pytest.raises(InvalidSignatureError):
        Signature.from_text(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("purpose", ["", "lab\x00report"])
def test_a_purpose_must_be_a_plain_non_empty_name(key: SigningKey, purpose: str) -> None:
    with pytest.raises(ConfigurationError, match="purpose"):
        key.sign(RECORD, purpose=purpose)


# -- encoding -------------------------------------------------------------------------------------


def test_a_record_holding_a_float_is_refused_with_a_clear_message(key: SigningKey) -> None:
    with pytest.raises(EncodingError, match=r"record\.dose: floats have no canonical form"):
        key.sign({**RECORD, "dose": 0.5}, purpose=PURPOSE)


def test_verifying_a_record_holding_a_float_is_refused(
    key: SigningKey, signature: Signature
) -> None:
    with pytest.raises(EncodingError, match=r"record\.dose"):
        key.verify_key.verify({**RECORD, "dose": 0.5}, signature, purpose=PURPOSE)


# -- key hygiene --------------------------------------------------------------------------------


def test_a_signing_key_repr_shows_no_key_material(key: SigningKey) -> None:
    text = repr(key)
    der = key.private_bytes().expose()

    assert text == f"<SigningKey {key.algorithm.value} {key.key_id}, redacted>"
    assert der.hex()[-32:] not in text
    assert repr(key.verify_key) == f"<VerifyKey {key.algorithm.value} {key.key_id}>"


def test_a_signing_key_cannot_be_pickled_or_copied(key: SigningKey) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        copy.deepcopy(key)


def test_a_key_of_another_algorithm_is_refused(
    signing_keys: Callable[[SignatureAlgorithm, int], SigningKey],
) -> None:
    ecdsa = signing_keys(SignatureAlgorithm.ECDSA_P256_SHA256, 0)
    with pytest.raises(ConfigurationError, match="not a Ed25519 key"):
        SigningKey.from_private_bytes("Ed25519", ecdsa.private_bytes())
    with pytest.raises(ConfigurationError):
        VerifyKey.from_bytes("RSA-PSS-3072-SHA256", ecdsa.verify_key.public_bytes())


def test_an_ecdsa_key_on_another_curve_is_refused() -> None:
    der = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigurationError, match="not a ECDSA-P256-SHA256 key"):
        SigningKey.from_private_bytes("ECDSA-P256-SHA256", SecretBytes(der))


def test_an_rsa_2048_key_is_refused_as_weak() -> None:
    der = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(WeakKeyError, match="below 3072 bits"):
        SigningKey.from_private_bytes("RSA-PSS-3072-SHA256", SecretBytes(der))


def test_bytes_that_are_not_a_key_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="not a valid Ed25519 private key"):
        SigningKey.from_private_bytes("Ed25519", SecretBytes(b"\x30" * 48))


# -- official test vector --------------------------------------------------------------------------

# RFC 8032, section 7.1, TEST 1 (empty message).
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
    "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_ed25519_matches_rfc_8032_test_1() -> None:
    private = _primitives.PrivateSigningKey(
        "Ed25519", ed25519.Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    )
    public = _primitives.PublicSigningKey(
        "Ed25519", ed25519.Ed25519PublicKey.from_public_bytes(RFC8032_PUBLIC)
    )

    assert private.sign(b"") == RFC8032_SIGNATURE  # Ed25519 is deterministic
    assert private.public_key().public_bytes() == public.public_bytes()
    public.verify(b"", RFC8032_SIGNATURE)
    with pytest.raises(InvalidSignatureError):
        public.verify(b"\x00", RFC8032_SIGNATURE)


def test_the_rfc_8032_key_signs_records_with_a_domain_prefix() -> None:
    # The same key through the record API: the signature is not the raw one over b"".
    secret = SecretBytes(
        ed25519.Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET).private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key = SigningKey.from_private_bytes("Ed25519", secret)
    signature = key.sign({}, purpose=PURPOSE)

    assert signature.value != RFC8032_SIGNATURE
    assert key.sign({}, purpose=PURPOSE) == signature
    key.verify_key.verify({}, signature, purpose=PURPOSE)
