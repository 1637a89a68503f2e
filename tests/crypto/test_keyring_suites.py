"""Keyrings that encrypt under a suite chosen per write (the adaptive policy, issue 6): one
active version per suite besides the primary's, added explicitly, retired by rotation, persisted
and reloaded, and any mix of suites decrypts."""

from __future__ import annotations

import io
import json

import pytest

from carevault.crypto import (
    ConfigurationError,
    DecryptionError,
    Keyring,
    KeyState,
    KeyStateError,
    Suite,
    parse_header,
    streaming,
)

CONTEXT: dict[str, str | int] = {"table": "notes", "column": "body", "row": 7, "patient": "p-7"}
OTHER_SUITES = [s for s in Suite if s is not Suite.AES_128_GCM]


def states(ring: Keyring) -> dict[int, KeyState]:
    return {info.version: info.state for info in ring.versions()}


def test_it_refuses_a_suite_it_has_no_active_key_for() -> None:
    ring = Keyring.generate("p", Suite.AES_128_GCM)
    with pytest.raises(KeyStateError, match="no active AES-256-GCM key"):
        ring.encrypt(b"x", CONTEXT, suite=Suite.AES_256_GCM)


@pytest.mark.parametrize("suite", OTHER_SUITES, ids=lambda s: s.label)
def test_a_write_is_sealed_under_the_suite_it_asked_for_and_decrypts(suite: Suite) -> None:
    ring = Keyring.generate("p", Suite.AES_128_GCM)
    info = ring.add_suite(suite)
    assert info is not None
    assert info.state is KeyState.ACTIVE
    assert info.suite is suite
    sealed = ring.encrypt(b"secret", CONTEXT, suite=suite)
    header = parse_header(sealed)
    assert (header.suite, header.key_id) == (suite, info.version)
    assert ring.decrypt(sealed, CONTEXT) == b"secret"
    # The primary still encrypts when no suite is named.
    assert parse_header(ring.encrypt(b"x", CONTEXT)).suite is Suite.AES_128_GCM


def test_adding_a_suite_twice_or_the_primarys_suite_adds_nothing() -> None:
    ring = Keyring.generate("p", Suite.AES_256_GCM)
    assert ring.add_suite(Suite.AES_256_GCM) is None
    assert ring.add_suite("AES-192-GCM") is not None
    assert ring.add_suite(Suite.AES_192_GCM) is None
    assert ring.encrypting_suites() == {Suite.AES_256_GCM, Suite.AES_192_GCM}
    assert ring.can_encrypt("aes-192-gcm")
    assert not ring.can_encrypt(Suite.AES_128_GCM)


def test_a_rotation_retires_every_encrypting_version_but_keeps_them_readable() -> None:
    ring = Keyring.generate("p", Suite.AES_128_GCM)
    ring.add_suite(Suite.HYBRID_X25519_AES_256_GCM)
    old = ring.encrypt(b"old", CONTEXT, suite=Suite.HYBRID_X25519_AES_256_GCM)
    ring.rotate()
    assert states(ring) == {1: KeyState.DECRYPT_ONLY, 2: KeyState.DECRYPT_ONLY, 3: KeyState.PRIMARY}
    assert not ring.can_encrypt(Suite.HYBRID_X25519_AES_256_GCM)
    assert ring.decrypt(old, CONTEXT) == b"old"
    fresh = ring.add_suite(Suite.HYBRID_X25519_AES_256_GCM)
    assert fresh is not None
    assert fresh.version == 4


def test_reencrypting_moves_a_value_to_the_suite_asked_for_once() -> None:
    ring = Keyring.generate("p", Suite.AES_128_GCM)
    weak = ring.encrypt(b"v", CONTEXT)
    ring.add_suite(Suite.AES_256_GCM)
    assert ring.needs_reencrypt(weak, suite=Suite.AES_256_GCM)
    strong = ring.reencrypt(weak, CONTEXT, suite=Suite.AES_256_GCM)
    assert parse_header(strong).suite is Suite.AES_256_GCM
    assert not ring.needs_reencrypt(strong, suite=Suite.AES_256_GCM)
    assert ring.reencrypt(strong, CONTEXT, suite=Suite.AES_256_GCM) == strong
    with pytest.raises(DecryptionError):
        ring.reencrypt(weak, {**CONTEXT, "row": 8}, suite=Suite.AES_256_GCM)


def test_an_active_version_survives_serialisation_and_keeps_encrypting() -> None:
    ring = Keyring.generate("p", Suite.AES_128_GCM)
    ring.add_suite(Suite.RSA_3072_OAEP_AES_256_GCM)
    sealed = ring.encrypt(b"v", CONTEXT, suite=Suite.RSA_3072_OAEP_AES_256_GCM)
    loaded = Keyring.from_json(ring.to_json())
    assert loaded.decrypt(sealed, CONTEXT) == b"v"
    again = loaded.encrypt(b"w", CONTEXT, suite=Suite.RSA_3072_OAEP_AES_256_GCM)
    assert parse_header(again).key_id == 2


def test_it_refuses_stored_data_with_two_encrypting_keys_for_one_suite() -> None:
    doc = json.loads(Keyring.generate("p", Suite.AES_256_GCM).to_json())
    twin = {**doc["versions"][0], "version": 2, "state": "active"}
    doc["versions"].append(twin)
    with pytest.raises(ConfigurationError, match="two encrypting keys"):
        Keyring.from_json(json.dumps(doc))
    doc["versions"].append({**twin, "version": 3})
    with pytest.raises(ConfigurationError, match="bad active"):
        Keyring.from_json(json.dumps(doc))


def test_an_active_symmetric_version_is_replaced_when_its_nonce_budget_runs_out() -> None:
    ring = Keyring("p", nonce_budget=2)
    ring.rotate(Suite.AES_128_GCM)
    ring.add_suite(Suite.AES_256_GCM)
    seen = [
        parse_header(ring.encrypt(b"x", CONTEXT, suite=Suite.AES_256_GCM)).key_id for _ in range(3)
    ]
    assert seen == [2, 2, 3]
    assert states(ring)[2] is KeyState.DECRYPT_ONLY
    assert states(ring)[3] is KeyState.ACTIVE
    assert states(ring)[1] is KeyState.PRIMARY


def test_an_active_version_cannot_be_disabled_and_destroying_it_stops_its_suite() -> None:
    ring = Keyring.generate("p", Suite.AES_128_GCM)
    ring.add_suite(Suite.AES_256_GCM)
    with pytest.raises(KeyStateError, match="encrypting key cannot be disabled"):
        ring.disable(2)
    ring.destroy(2)
    assert not ring.can_encrypt(Suite.AES_256_GCM)
    assert ring.add_suite(Suite.AES_256_GCM) is not None


def test_a_file_is_sealed_under_the_suite_asked_for_and_says_so() -> None:
    ring = Keyring.generate("p", Suite.AES_128_GCM)
    ring.add_suite(Suite.HYBRID_P256_AES_256_GCM)
    out = io.BytesIO()
    streaming.encrypt_stream(
        ring, io.BytesIO(b"a" * 10_000), out, CONTEXT, suite=Suite.HYBRID_P256_AES_256_GCM
    )
    out.seek(0)
    assert streaming.sealing_suite(out) is Suite.HYBRID_P256_AES_256_GCM
    out.seek(0)
    assert b"".join(bytes(c) for c in streaming.iter_decrypt(ring, out, CONTEXT)) == b"a" * 10_000
    plain = io.BytesIO()
    streaming.encrypt_stream(ring, io.BytesIO(b"b"), plain, CONTEXT)
    plain.seek(0)
    assert streaming.sealing_suite(plain) is Suite.AES_128_GCM
    with pytest.raises(DecryptionError):
        streaming.sealing_suite(io.BytesIO(b"not a file"))
