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
from carevault.crypto.selftest import aes_gcm_known_answer


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


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
    items: list[tuple[str, Callable[[], str]]] = [("AES-GCM known answer", aes_gcm_known_answer)]
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
