"""The crypto self-check that ``make run`` / ``carevault selfcheck`` runs: known-answer tests of
the primitives, a round trip and a tamper check for every suite, every signature algorithm,
streaming and Shamir. Each check says what it proved; any failure makes the command fail."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from carevault.crypto import (
    DecryptionError,
    InvalidSignatureError,
    Keyring,
    SecretBytes,
    SignatureAlgorithm,
    SigningKey,
    Suite,
    recover_secret,
    split_secret,
    streaming,
)
from carevault.crypto._primitives import AesGcm, aes_gcm_test_only_encrypt

# "The Galois/Counter Mode of Operation (GCM)", McGrew & Viega, test case 16 (AES-256, 96-bit IV,
# with associated data); the same vector is in NIST's gcmEncryptExtIV256 family.
_KAT = {
    "key": "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
    "iv": "cafebabefacedbaddecaf888",
    "aad": "feedfacedeadbeeffeedfacedeadbeefabaddad2",
    "plaintext": "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    "ciphertext": "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
    "tag": "76fc6ece0f4e1768cddf8853bb2d551b",
}


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def _gcm_known_answer() -> str:
    v = {k: bytes.fromhex(x) for k, x in _KAT.items()}
    sealed = aes_gcm_test_only_encrypt(v["key"], v["iv"], v["plaintext"], v["aad"])
    if sealed != v["ciphertext"] + v["tag"]:
        raise AssertionError("AES-256-GCM does not reproduce the published test vector")
    if AesGcm(v["key"]).open(v["iv"] + sealed, v["aad"]) != v["plaintext"]:
        raise AssertionError("AES-256-GCM does not decrypt the published test vector")
    return "published AES-256-GCM vector reproduced"


def _suite_check(suite: Suite) -> Callable[[], str]:
    def check() -> str:
        ring = Keyring.generate("selfcheck", suite)
        context: dict[str, str | int] = {"table": "selfcheck", "row": 1}
        sealed = ring.encrypt(b"selfcheck", context)
        if ring.decrypt(sealed, context) != b"selfcheck":
            raise AssertionError("round trip changed the data")
        tampered = bytearray(sealed)
        tampered[-1] ^= 1
        moved: dict[str, str | int] = {"table": "selfcheck", "row": 2}
        for bad, ctx in ((bytes(tampered), context), (sealed, moved)):
            try:
                ring.decrypt(bad, ctx)
            except DecryptionError:
                continue
            raise AssertionError("a tampered or misplaced ciphertext decrypted")
        return "round trip ok; flipped bit and moved ciphertext rejected"

    return check


def _signature_check(alg: SignatureAlgorithm) -> Callable[[], str]:
    def check() -> str:
        key = SigningKey.generate(alg)
        record = {"drug": "amoxicillin", "dose": "500 mg"}
        signature = key.sign(record, purpose="selfcheck")
        key.verify_key.verify(record, signature, purpose="selfcheck")
        try:
            key.verify_key.verify({**record, "dose": "5000 mg"}, signature, purpose="selfcheck")
        except InvalidSignatureError:
            return "signs, verifies, and rejects an altered record"
        raise AssertionError("an altered record verified")

    return check


def _stream_check() -> str:
    ring = Keyring.generate("selfcheck-stream")
    data = bytes(range(256)) * 100
    sealed = io.BytesIO()
    streaming.encrypt_stream(ring, io.BytesIO(data), sealed, {"file": 1}, chunk_bytes=4096)
    out = io.BytesIO()
    streaming.decrypt_stream(ring, io.BytesIO(sealed.getvalue()), out, {"file": 1})
    if out.getvalue() != data:
        raise AssertionError("stream round trip changed the data")
    try:
        streaming.decrypt_stream(
            ring, io.BytesIO(sealed.getvalue()[:-100]), io.BytesIO(), {"file": 1}
        )
    except DecryptionError:
        return "round trip ok; truncation rejected"
    raise AssertionError("a truncated stream decrypted")


def _shamir_check() -> str:
    secret = SecretBytes.random(32)
    shares = split_secret(secret, 2, 3)
    if recover_secret(shares[1:]) != secret:
        raise AssertionError("2 of 3 shares did not recover the secret")
    return "2-of-3 split recovered"


def checks() -> list[tuple[str, Callable[[], str]]]:
    items: list[tuple[str, Callable[[], str]]] = [("AES-GCM known answer", _gcm_known_answer)]
    items += [(f"suite {s.label}", _suite_check(s)) for s in Suite]
    items += [(f"signature {a.value}", _signature_check(a)) for a in SignatureAlgorithm]
    items += [("streaming", _stream_check), ("Shamir", _shamir_check)]
    return items


def run() -> list[CheckResult]:
    results = []
    for name, check in checks():
        try:
            results.append(CheckResult(name, True, check()))
        except Exception as exc:  # a self-check reports every failure, it does not stop at one
            results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}"))
    return results
