"""Suites: the names configuration uses, the ids ciphertexts store, and what is refused."""

from __future__ import annotations

import pytest

from carevault.crypto import (
    ConfigurationError,
    Suite,
    SuiteKind,
    UnknownSuiteError,
    WeakKeyError,
)

SYMMETRIC = [Suite.AES_128_GCM, Suite.AES_192_GCM, Suite.AES_256_GCM]
ASYMMETRIC = [s for s in Suite if s not in SYMMETRIC]


@pytest.mark.parametrize("suite", list(Suite), ids=str)
def test_a_suite_is_found_by_its_name_in_any_case(suite: Suite) -> None:
    assert Suite.parse(suite.label) is suite
    assert Suite.parse(suite.label.lower()) is suite
    assert Suite.parse(f"  {suite.label.title()}\n") is suite


def test_parsing_a_suite_returns_it_unchanged() -> None:
    assert Suite.parse(Suite.HYBRID_P256_AES_256_GCM) is Suite.HYBRID_P256_AES_256_GCM


@pytest.mark.parametrize("suite", list(Suite), ids=str)
def test_a_suite_prints_as_its_configuration_name(suite: Suite) -> None:
    assert str(suite) == suite.label
    assert Suite.parse(str(suite)) is suite


def test_every_suite_has_a_unique_one_byte_id() -> None:
    ids = [suite.suite_id for suite in Suite]
    assert len(set(ids)) == len(ids)
    assert all(0 < suite_id < 256 for suite_id in ids)


def test_every_suite_has_a_unique_name() -> None:
    labels = [suite.label for suite in Suite]
    assert len(set(labels)) == len(labels)


def test_suite_ids_never_change_because_stored_ciphertexts_name_them() -> None:
    assert {suite.label: suite.suite_id for suite in Suite} == {
        "AES-128-GCM": 0x01,
        "AES-192-GCM": 0x02,
        "AES-256-GCM": 0x03,
        "HYBRID-X25519-AES-256-GCM": 0x10,
        "HYBRID-P256-AES-256-GCM": 0x11,
        "RSA-3072-OAEP-AES-256-GCM": 0x20,
    }


@pytest.mark.parametrize("suite", list(Suite), ids=str)
def test_a_suite_is_found_by_its_id(suite: Suite) -> None:
    assert Suite.from_id(suite.suite_id) is suite


@pytest.mark.parametrize("suite_id", [0x00, 0x04, 0x12, 0x21, 0xFF])
def test_an_unassigned_id_names_no_suite(suite_id: int) -> None:
    assert Suite.from_id(suite_id) is None


@pytest.mark.parametrize(
    "name",
    [
        "AES-256-CBC",
        "AES-128-CTR",
        "AES-256-ECB",
        "aes-192-cbc",
        "AES-256-CFB",
        "AES-256-OFB",
        "AES-256-XTS",
    ],
)
def test_a_mode_without_authentication_is_refused_with_a_message_saying_it_is_not_aead(
    name: str,
) -> None:
    with pytest.raises(UnknownSuiteError, match=r"not an authenticated \(AEAD\) mode"):
        Suite.parse(name)


@pytest.mark.parametrize(
    "name", ["RSA-2048-OAEP-AES-256-GCM", "rsa-1024-oaep-aes-256-gcm", "RSA-3071-OAEP-AES-256-GCM"]
)
def test_rsa_below_3072_bits_is_refused_as_a_weak_key(name: str) -> None:
    with pytest.raises(WeakKeyError, match="3072") as excinfo:
        Suite.parse(name)
    assert not isinstance(excinfo.value, UnknownSuiteError)


@pytest.mark.parametrize("name", ["CHACHA20-POLY1305", "AES-512-GCM", "", "AES256GCM"])
def test_an_unknown_name_is_refused_with_the_list_of_known_suites(name: str) -> None:
    with pytest.raises(UnknownSuiteError) as excinfo:
        Suite.parse(name)
    message = str(excinfo.value)
    assert "unknown encryption suite" in message
    for suite in Suite:
        assert suite.label in message


def test_every_refusal_is_a_configuration_error_that_operators_can_catch() -> None:
    for name in ["AES-256-CBC", "RSA-2048-OAEP-AES-256-GCM", "ROT13"]:
        with pytest.raises(ConfigurationError):
            Suite.parse(name)


def test_only_the_aes_gcm_suites_are_symmetric() -> None:
    assert [s for s in Suite if s.is_symmetric] == SYMMETRIC
    assert all(s.kind is SuiteKind.SYMMETRIC for s in SYMMETRIC)
    assert Suite.RSA_3072_OAEP_AES_256_GCM.kind is SuiteKind.RSA
    assert Suite.HYBRID_X25519_AES_256_GCM.kind is SuiteKind.HYBRID
    assert Suite.HYBRID_P256_AES_256_GCM.kind is SuiteKind.HYBRID


def test_each_aes_suite_uses_the_key_size_its_name_says() -> None:
    assert [s.aes_key_bytes for s in SYMMETRIC] == [16, 24, 32]


@pytest.mark.parametrize("suite", ASYMMETRIC, ids=str)
def test_asymmetric_suites_protect_the_payload_with_aes_256(suite: Suite) -> None:
    assert suite.aes_key_bytes == 32


def test_protection_levels_never_rank_a_weaker_suite_higher() -> None:
    assert Suite.AES_128_GCM.level < Suite.AES_192_GCM.level < Suite.AES_256_GCM.level
    assert all(s.level > Suite.AES_256_GCM.level for s in ASYMMETRIC)
