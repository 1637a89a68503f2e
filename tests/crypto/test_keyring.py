"""Keyrings: key states, rotation, re-encryption, nonce budgets, crypto-shredding,
serialisation, and keys that refuse to be printed or pickled."""

from __future__ import annotations

import base64
import json
import pickle  # noqa: TID251  (only to prove that key material refuses to be pickled)
from typing import Any

import pytest

from carevault.crypto import (
    ConfigurationError,
    DecryptionError,
    Keyring,
    KeyState,
    KeyStateError,
    NonceBudgetExhaustedError,
    SecretBytes,
    Suite,
    parse_header,
)
from carevault.crypto.keys import KeyMaterial

CONTEXT: dict[str, str | int] = {"table": "notes", "column": "body", "row": 7, "patient": "p-7"}
ASYMMETRIC = [s for s in Suite if not s.is_symmetric]


def assert_opaque_failure(ring: Keyring, ciphertext: bytes) -> None:
    with pytest.raises(DecryptionError, match=r"\Adecryption failed\Z"):
        ring.decrypt(ciphertext, CONTEXT)


def key_id(ciphertext: bytes) -> int:
    return parse_header(ciphertext).key_id


def states(ring: Keyring) -> dict[int, KeyState]:
    return {info.version: info.state for info in ring.versions()}


def exported_secrets(ring: Keyring) -> list[str]:
    """Every base64 key string in the keyring's JSON (the material that must never leak)."""
    doc = json.loads(ring.to_json())
    return [
        value
        for version in doc["versions"]
        if version["material"] is not None
        for value in version["material"].values()
    ]


def with_nonce_budget(ring: Keyring, budget: int) -> Keyring:
    doc = json.loads(ring.to_json())
    return Keyring.from_json(json.dumps({**doc, "nonce_budget": budget}))


# -- states --------------------------------------------------------------------------------------


def test_a_new_keyring_has_one_primary_version_that_encrypts_and_decrypts() -> None:
    ring = Keyring.generate("patient-1")
    assert states(ring) == {1: KeyState.PRIMARY}
    assert ring.primary.version == 1
    assert ring.primary.suite is Suite.AES_256_GCM
    ciphertext = ring.encrypt(b"allergy: penicillin", CONTEXT)
    assert key_id(ciphertext) == 1
    assert ring.decrypt(ciphertext, CONTEXT) == b"allergy: penicillin"


def test_after_rotation_old_data_still_decrypts_and_new_data_uses_the_new_version() -> None:
    ring = Keyring.generate("patient-1")
    old = ring.encrypt(b"old", CONTEXT)
    info = ring.rotate()
    assert info.version == 2
    assert info.state is KeyState.PRIMARY
    assert states(ring) == {1: KeyState.DECRYPT_ONLY, 2: KeyState.PRIMARY}
    new = ring.encrypt(b"new", CONTEXT)
    assert key_id(old) == 1
    assert key_id(new) == 2
    assert ring.decrypt(old, CONTEXT) == b"old"
    assert ring.decrypt(new, CONTEXT) == b"new"


def test_rotation_to_another_suite_keeps_data_of_every_suite_readable() -> None:
    ring = Keyring.generate("mixed", Suite.AES_128_GCM)
    first = ring.encrypt(b"one", CONTEXT)
    ring.rotate(Suite.HYBRID_X25519_AES_256_GCM)
    second = ring.encrypt(b"two", CONTEXT)
    ring.rotate("aes-256-gcm")
    third = ring.encrypt(b"three", CONTEXT)
    ring.rotate()  # no suite given: the primary's suite again
    assert [info.suite for info in ring.versions()] == [
        Suite.AES_128_GCM,
        Suite.HYBRID_X25519_AES_256_GCM,
        Suite.AES_256_GCM,
        Suite.AES_256_GCM,
    ]
    assert [parse_header(c).suite for c in (first, second, third)] == [
        Suite.AES_128_GCM,
        Suite.HYBRID_X25519_AES_256_GCM,
        Suite.AES_256_GCM,
    ]
    assert [ring.decrypt(c, CONTEXT) for c in (first, second, third)] == [b"one", b"two", b"three"]


def test_a_disabled_version_refuses_to_decrypt_until_it_is_enabled_again() -> None:
    ring = Keyring.generate("patient-1")
    old = ring.encrypt(b"old", CONTEXT)
    ring.rotate()
    ring.disable(1)
    assert states(ring)[1] is KeyState.DISABLED
    assert_opaque_failure(ring, old)
    ring.enable(1)
    assert states(ring)[1] is KeyState.DECRYPT_ONLY
    assert ring.decrypt(old, CONTEXT) == b"old"


def test_the_primary_version_cannot_be_disabled() -> None:
    ring = Keyring.generate("patient-1")
    with pytest.raises(KeyStateError, match="rotate first"):
        ring.disable(1)
    assert ring.primary.version == 1


def test_a_version_that_does_not_exist_cannot_change_state() -> None:
    ring = Keyring.generate("patient-1")
    for change in (ring.disable, ring.enable, ring.destroy):
        with pytest.raises(KeyStateError, match="no version 9"):
            change(9)


def test_a_destroyed_version_is_unreadable_forever_and_cannot_be_re_enabled() -> None:
    ring = Keyring.generate("patient-1")
    old = ring.encrypt(b"old", CONTEXT)
    ring.rotate()
    ring.destroy(1)
    assert states(ring)[1] is KeyState.DESTROYED
    assert_opaque_failure(ring, old)
    with pytest.raises(KeyStateError, match="destroyed"):
        ring.enable(1)
    with pytest.raises(KeyStateError, match="destroyed"):
        ring.disable(1)
    assert_opaque_failure(ring, old)
    # Nor does a round trip through JSON bring it back.
    assert_opaque_failure(Keyring.from_json(ring.to_json()), old)


def test_destroying_the_primary_leaves_no_primary_so_encrypting_is_refused() -> None:
    ring = Keyring.generate("patient-1")
    older = ring.encrypt(b"older", CONTEXT)
    ring.rotate()
    newer = ring.encrypt(b"newer", CONTEXT)
    ring.destroy(2)
    with pytest.raises(KeyStateError, match="no primary"):
        ring.encrypt(b"x", CONTEXT)
    with pytest.raises(KeyStateError, match="no primary"):
        _ = ring.primary
    assert_opaque_failure(ring, newer)
    assert ring.decrypt(older, CONTEXT) == b"older"
    # A new primary needs an explicit suite: there is no primary to copy it from.
    with pytest.raises(ConfigurationError):
        ring.rotate()
    assert ring.rotate(Suite.AES_256_GCM).version == 3
    assert key_id(ring.encrypt(b"x", CONTEXT)) == 3


def test_min_decrypt_version_cuts_off_older_versions() -> None:
    ring = Keyring.generate("patient-1")
    ciphertexts = [ring.encrypt(b"v1", CONTEXT)]
    for _ in range(2):
        ring.rotate()
        ciphertexts.append(ring.encrypt(f"v{ring.primary.version}".encode(), CONTEXT))
    ring.set_min_decrypt_version(2)
    assert ring.min_decrypt_version == 2
    assert_opaque_failure(ring, ciphertexts[0])
    assert ring.decrypt(ciphertexts[1], CONTEXT) == b"v2"
    assert ring.decrypt(ciphertexts[2], CONTEXT) == b"v3"
    ring.set_min_decrypt_version(1)
    assert ring.decrypt(ciphertexts[0], CONTEXT) == b"v1"


def test_assigning_min_decrypt_version_directly_also_cuts_off_older_versions() -> None:
    ring = Keyring.generate("patient-1")
    old = ring.encrypt(b"old", CONTEXT)
    ring.rotate()
    ring.min_decrypt_version = 2
    assert_opaque_failure(ring, old)
    ring.min_decrypt_version = 1
    assert ring.decrypt(old, CONTEXT) == b"old"


def test_min_decrypt_version_cannot_exceed_the_primary() -> None:
    ring = Keyring.generate("patient-1")
    with pytest.raises(KeyStateError):
        ring.set_min_decrypt_version(2)
    assert ring.min_decrypt_version == 1


def test_reencrypt_moves_data_to_the_primary_version() -> None:
    ring = Keyring.generate("patient-1")
    old = ring.encrypt(b"lab result", CONTEXT)
    assert not ring.needs_reencrypt(old)
    ring.rotate()
    assert ring.needs_reencrypt(old)
    moved = ring.reencrypt(old, CONTEXT)
    assert key_id(moved) == 2
    assert not ring.needs_reencrypt(moved)
    assert ring.decrypt(moved, CONTEXT) == b"lab result"
    assert ring.reencrypt(moved, CONTEXT) == moved  # already under the primary: unchanged
    # Once everything is moved, the old version can be cut off without losing data.
    ring.set_min_decrypt_version(2)
    assert ring.decrypt(moved, CONTEXT) == b"lab result"
    assert_opaque_failure(ring, old)


def test_reencrypt_keeps_the_ciphertext_bound_to_its_context() -> None:
    ring = Keyring.generate("patient-1")
    old = ring.encrypt(b"x", CONTEXT)
    ring.rotate()
    with pytest.raises(DecryptionError):
        ring.reencrypt(old, {**CONTEXT, "row": 8})
    moved = ring.reencrypt(old, CONTEXT)
    with pytest.raises(DecryptionError):
        ring.decrypt(moved, {**CONTEXT, "row": 8})


def test_shredding_makes_everything_unreadable() -> None:
    ring = Keyring.generate("patient-1", Suite.AES_128_GCM)
    ciphertexts = [ring.encrypt(b"a", CONTEXT)]
    ring.rotate(Suite.HYBRID_P256_AES_256_GCM)
    ciphertexts.append(ring.encrypt(b"b", CONTEXT))
    ring.rotate(Suite.AES_256_GCM)
    ciphertexts.append(ring.encrypt(b"c", CONTEXT))
    ring.disable(2)
    ring.shred()
    assert set(states(ring).values()) == {KeyState.DESTROYED}
    for ciphertext in ciphertexts:
        assert_opaque_failure(ring, ciphertext)
    with pytest.raises(KeyStateError):
        ring.encrypt(b"x", CONTEXT)
    assert exported_secrets(ring) == []
    for ciphertext in ciphertexts:
        assert_opaque_failure(Keyring.from_json(ring.to_json()), ciphertext)


# -- nonce budget --------------------------------------------------------------------------------


def test_the_encryption_after_the_nonce_budget_rotates_and_reports_the_change() -> None:
    ring = Keyring.generate("x", nonce_budget=3)
    seen: list[tuple[Keyring, int]] = []
    ring.on_change = lambda changed: seen.append((changed, changed.primary.version))
    written = [ring.encrypt(f"{i}".encode(), CONTEXT) for i in range(3)]
    assert [key_id(c) for c in written] == [1, 1, 1]
    calls_before = len(seen)
    fourth = ring.encrypt(b"3", CONTEXT)
    assert key_id(fourth) == 2
    assert len(seen) == calls_before + 1
    assert seen[-1] == (ring, 2)
    assert states(ring) == {1: KeyState.DECRYPT_ONLY, 2: KeyState.PRIMARY}
    assert [info.encryptions for info in ring.versions()] == [3, 1]
    for i, ciphertext in enumerate([*written, fourth]):
        assert ring.decrypt(ciphertext, CONTEXT) == f"{i}".encode()


def test_reaching_the_nonce_budget_is_reported_so_the_owner_can_persist_it() -> None:
    ring = Keyring.generate("x", nonce_budget=3, auto_rotate=False)
    seen: list[int] = []
    ring.on_change = lambda changed: seen.append(changed.primary.encryptions)
    ring.encrypt(b"a", CONTEXT)
    ring.encrypt(b"b", CONTEXT)
    assert seen == []  # ordinary encryptions are not state changes
    ring.encrypt(b"c", CONTEXT)
    assert seen == [3]


def test_without_auto_rotation_an_exhausted_key_refuses_to_encrypt() -> None:
    ring = Keyring.generate("x", nonce_budget=3, auto_rotate=False)
    for _ in range(3):
        ring.encrypt(b"a", CONTEXT)
    with pytest.raises(NonceBudgetExhaustedError, match="rotate") as excinfo:
        ring.encrypt(b"a", CONTEXT)
    assert isinstance(excinfo.value, KeyStateError)
    assert states(ring) == {1: KeyState.PRIMARY}
    assert ring.primary.encryptions == 3  # the refused call used no nonce
    ring.rotate()
    assert key_id(ring.encrypt(b"a", CONTEXT)) == 2


@pytest.mark.parametrize("suite", ASYMMETRIC, ids=str)
def test_the_nonce_budget_does_not_apply_to_hybrid_or_rsa_suites(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite
) -> None:
    # A fresh random content key or ephemeral key per message: no nonce is ever reused.
    ring = with_nonce_budget(keyrings_by_suite[suite], 1)
    ring.auto_rotate = False
    for _ in range(3):
        assert key_id(ring.encrypt(b"a", CONTEXT)) == 1
    assert ring.primary.encryptions == 0
    assert not ring.rotation_due()


def test_rotation_is_due_at_half_the_nonce_budget() -> None:
    ring = Keyring.generate("x", nonce_budget=4)
    due = []
    for _ in range(3):
        due.append(ring.rotation_due())
        ring.encrypt(b"a", CONTEXT)
    due.append(ring.rotation_due())
    assert due == [False, False, True, True]
    ring.rotate()
    assert not ring.rotation_due()


def test_a_keyring_without_a_primary_is_due_for_rotation() -> None:
    ring = Keyring.generate("x")
    ring.destroy(1)
    assert ring.rotation_due()


@pytest.mark.parametrize("budget", [0, -1, 2**32 + 1])
def test_a_nonce_budget_outside_what_gcm_allows_is_refused(budget: int) -> None:
    with pytest.raises(ConfigurationError, match="nonce budget"):
        Keyring("x", nonce_budget=budget)


def test_a_keyring_needs_a_name() -> None:
    with pytest.raises(ConfigurationError, match="name"):
        Keyring.generate("")


def test_plaintext_must_be_bytes() -> None:
    ring = Keyring.generate("x")
    with pytest.raises(TypeError, match="bytes"):
        ring.encrypt("text", CONTEXT)  # type: ignore[arg-type]


# -- serialisation -------------------------------------------------------------------------------


def test_a_json_round_trip_keeps_versions_states_counters_and_old_data() -> None:
    ring = Keyring.generate("patient-9", nonce_budget=1000)
    first = ring.encrypt(b"v1", CONTEXT)
    ring.encrypt(b"v1 again", CONTEXT)
    ring.rotate(Suite.HYBRID_X25519_AES_256_GCM)
    second = ring.encrypt(b"v2", CONTEXT)
    ring.rotate(Suite.AES_128_GCM)
    third = ring.encrypt(b"v3", CONTEXT)
    ring.rotate(Suite.AES_256_GCM)
    fourth = ring.encrypt(b"v4", CONTEXT)
    ring.disable(2)
    ring.destroy(3)

    loaded = Keyring.from_json(ring.to_json())

    assert loaded.name == "patient-9"
    assert loaded.nonce_budget == 1000
    assert loaded.versions() == ring.versions()  # version, suite, state, created_at, counter
    assert [info.encryptions for info in loaded.versions()] == [2, 0, 1, 1]
    assert loaded.decrypt(first, CONTEXT) == b"v1"
    assert loaded.decrypt(fourth, CONTEXT) == b"v4"
    assert_opaque_failure(loaded, second)  # still disabled
    assert_opaque_failure(loaded, third)  # still destroyed
    loaded.enable(2)
    assert loaded.decrypt(second, CONTEXT) == b"v2"
    loaded.encrypt(b"more", CONTEXT)
    assert loaded.primary.encryptions == 2  # the counter carries on, it does not restart


def test_a_json_round_trip_keeps_the_minimum_decryption_version() -> None:
    ring = Keyring.generate("x")
    old = ring.encrypt(b"x", CONTEXT)
    ring.rotate()
    ring.set_min_decrypt_version(2)
    loaded = Keyring.from_json(ring.to_json())
    assert loaded.min_decrypt_version == 2
    assert_opaque_failure(loaded, old)


def test_destroyed_material_is_absent_from_the_json() -> None:
    ring = Keyring.generate("x")
    ring.rotate()
    (v1_key, v2_key) = exported_secrets(ring)
    ring.destroy(1)
    data = ring.to_json()
    assert v1_key.encode() not in data
    assert v2_key.encode() in data
    assert json.loads(data)["versions"][0]["material"] is None


def valid_doc() -> dict[str, Any]:
    ring = Keyring.generate("doc")
    ring.rotate()
    return json.loads(ring.to_json())


def edited(change: Any) -> bytes:
    doc = valid_doc()
    change(doc)
    return json.dumps(doc).encode()


GARBAGE = {
    "empty": b"",
    "not-json": b"not json at all",
    "not-utf8": b"\xff\xfe\xfd",
    "a-list": b"[]",
    "null": b"null",
    "a-number": b"42",
    "a-string": b'"keyring"',
    "an-empty-object": b"{}",
    "another-format": edited(lambda d: d.update(format=2)),
    "no-versions": edited(lambda d: d.pop("versions")),
    "versions-not-a-list": edited(lambda d: d.update(versions=7)),
    "a-version-not-an-object": edited(lambda d: d["versions"].append("v3")),
    "material-not-an-object": edited(lambda d: d["versions"][1].update(material=["k"])),
    "unknown-state": edited(lambda d: d["versions"][1].update(state="archived")),
    "unknown-suite": edited(lambda d: d["versions"][1].update(suite="AES-256-CBC")),
    "suite-not-text": edited(lambda d: d["versions"][1].update(suite=3)),
    "version-zero": edited(lambda d: d["versions"][1].update(version=0)),
    "duplicate-version": edited(lambda d: d["versions"][1].update(version=1)),
    "two-primaries": edited(lambda d: d["versions"][0].update(state="primary")),
    "primary-without-material": edited(lambda d: d["versions"][1].update(material=None)),
    "short-key": edited(lambda d: d["versions"][1].update(material={"k": "AAAA"})),
    "bad-budget": edited(lambda d: d.update(nonce_budget=0)),
}


@pytest.mark.parametrize("data", list(GARBAGE.values()), ids=list(GARBAGE))
def test_from_json_refuses_malformed_data_with_a_configuration_error(data: bytes) -> None:
    with pytest.raises(ConfigurationError):
        Keyring.from_json(data)


def test_from_json_refuses_a_keyring_with_two_primaries() -> None:
    with pytest.raises(ConfigurationError, match="more than one primary"):
        Keyring.from_json(GARBAGE["two-primaries"])


MARKER = "S3CRETxVALUE"


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["versions"][1].update(state=MARKER),
        lambda d: d["versions"][1].update(version=MARKER),
        lambda d: d["versions"][1].update(encryptions=MARKER),
        lambda d: d["versions"][1].update(material={"k": MARKER + "!"}),
        lambda d: d["versions"][1].update(material=MARKER),
        lambda d: d.update(nonce_budget=MARKER),
        lambda d: d.update(min_decrypt_version=MARKER),
    ],
    ids=["state", "version", "encryptions", "key", "material", "budget", "min-version"],
)
def test_from_json_errors_never_echo_the_values_they_refuse(change: Any) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        Keyring.from_json(edited(change))
    error = excinfo.value
    assert MARKER not in str(error)
    assert MARKER not in repr(error)
    # Nothing chained either: a traceback would print the inner error and its value.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


# -- keys that refuse to leak --------------------------------------------------------------------


def leak_forms(secret_b64: str) -> list[str]:
    raw = base64.b64decode(secret_b64)
    return [secret_b64, raw.hex(), repr(raw)[2:-1], secret_b64[:16]]


@pytest.mark.parametrize("suite", [Suite.AES_256_GCM, Suite.HYBRID_X25519_AES_256_GCM], ids=str)
def test_printing_a_keyring_shows_no_key_bytes(suite: Suite) -> None:
    ring = Keyring.generate("patient-1", suite)
    ring.rotate()
    shown = " ".join([repr(ring), str(ring), f"{ring}", repr(ring.versions()), repr(ring.primary)])
    assert "patient-1" in repr(ring)
    for secret in exported_secrets(ring):
        for form in leak_forms(secret):
            assert form not in shown


@pytest.mark.parametrize("suite", list(Suite), ids=str)
def test_printing_key_material_shows_no_key_bytes(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite
) -> None:
    doc = json.loads(keyrings_by_suite[suite].to_json())
    material = KeyMaterial.load(suite, doc["versions"][0]["material"])
    shown = f"{material!r} {material!s} {material}"
    assert suite.label in shown
    assert "redacted" in shown
    for secret in material.export().values():
        for form in leak_forms(secret):
            assert form not in shown


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_keyrings_key_material_and_secret_bytes_cannot_be_pickled(protocol: int) -> None:
    ring = Keyring.generate("patient-1")
    for thing in (ring, KeyMaterial.generate(Suite.AES_128_GCM), SecretBytes(b"k" * 32)):
        with pytest.raises(TypeError, match="pickled"):
            pickle.dumps(thing, protocol=protocol)


# -- public copies -------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ASYMMETRIC, ids=str)
def test_the_public_copy_of_an_asymmetric_keyring_encrypts_but_cannot_decrypt(
    keyrings_by_suite: dict[Suite, Keyring], suite: Suite
) -> None:
    ring = keyrings_by_suite[suite]
    public = ring.public()
    from_public = public.encrypt(b"referral letter", CONTEXT)
    assert key_id(from_public) == 1
    assert ring.decrypt(from_public, CONTEXT) == b"referral letter"
    assert_opaque_failure(public, from_public)
    assert_opaque_failure(public, ring.encrypt(b"x", CONTEXT))
    # And it holds no private key to lose: its JSON has public halves only.
    assert [set(v["material"]) for v in json.loads(public.to_json())["versions"]] == [{"pk"}]
    for secret in exported_secrets(ring):
        assert secret.encode() not in public.to_json()


def test_the_public_copy_of_a_rotated_hybrid_keyring_writes_under_the_primary() -> None:
    ring = Keyring.generate("server", Suite.HYBRID_X25519_AES_256_GCM)
    ring.rotate(Suite.HYBRID_P256_AES_256_GCM)
    ciphertext = ring.public().encrypt(b"x", CONTEXT)
    assert parse_header(ciphertext).key_id == 2
    assert parse_header(ciphertext).suite is Suite.HYBRID_P256_AES_256_GCM
    assert ring.decrypt(ciphertext, CONTEXT) == b"x"


@pytest.mark.parametrize("suite", [Suite.AES_128_GCM, Suite.AES_256_GCM], ids=str)
def test_a_symmetric_keyring_has_no_public_copy(suite: Suite) -> None:
    with pytest.raises(KeyStateError, match="symmetric"):
        Keyring.generate("x", suite).public()


def test_iterating_a_keyring_lists_its_versions_in_order() -> None:
    ring = Keyring.generate("x")
    ring.rotate()
    ring.rotate()
    assert [info.version for info in ring] == [1, 2, 3]
    assert [info.as_dict()["state"] for info in ring] == ["decrypt-only", "decrypt-only", "primary"]
