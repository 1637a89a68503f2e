"""``carevault bench crypto``: the crypto core against its baselines, side by side.

* envelope encrypt+decrypt of a 1 KiB field vs a bare ``AESGCM`` call (goal <= 1.5x);
* the same vs Fernet, the primitive of popular Django encrypted-field libraries (goal >= 5x);
* streaming a 64 MiB file vs ``openssl speed -evp aes-256-gcm`` on 16 KiB blocks (goal >= 0.6);
* signatures signed and verified per second, per algorithm.

Baselines are deliberately the bare primitives (with the random nonce any real use needs), so
the ratios show what the envelope, the keyring and the STREAM framing cost on top.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
import time
from typing import Any

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from carevault.crypto import BoundContext, Keyring, SignatureAlgorithm, SigningKey, Suite, streaming
from carevault.platform.tables import format_table

from .timing import per_call_seconds

FIELD_BYTES = 1024
STREAM_BYTES = 64 * 1024 * 1024
GOALS = {"vs_aesgcm_max": 1.5, "vs_fernet_min": 5.0, "stream_vs_openssl_min": 0.6}
RECORD = {
    "type": "prescription",
    "patient": "3f2c9a",
    "drug": "amoxicillin",
    "dose": "500 mg",
    "frequency": "every 8 hours",
    "days": 7,
    "prescriber": "doctor1",
}


def _field_benchmark(quick: bool) -> dict[str, Any]:
    field = os.urandom(FIELD_BYTES)
    context: dict[str, str | int] = {
        "table": "clinic_note",
        "column": "body",
        "row": 12345,
        "patient": "p-000042",
    }
    ring = Keyring.generate("bench", Suite.AES_256_GCM)
    aesgcm = AESGCM(AESGCM.generate_key(bit_length=256))
    fernet = Fernet(Fernet.generate_key())

    bound = BoundContext(context)

    def envelope() -> None:
        ring.decrypt(ring.encrypt(field, context), context)

    def envelope_bound() -> None:
        ring.decrypt(ring.encrypt(field, bound), bound)

    def bare_aesgcm() -> None:
        nonce = os.urandom(12)
        aesgcm.decrypt(nonce, aesgcm.encrypt(nonce, field, None), None)

    def fernet_roundtrip() -> None:
        fernet.decrypt(fernet.encrypt(field))

    calls, rounds = (200, 3) if quick else (5000, 15)
    t = per_call_seconds(
        {
            "envelope": envelope,
            "envelope_bound": envelope_bound,
            "aesgcm": bare_aesgcm,
            "fernet": fernet_roundtrip,
        },
        calls=calls,
        rounds=rounds,
    )
    return {
        "field_bytes": FIELD_BYTES,
        "envelope_us": t["envelope"] * 1e6,
        "envelope_bound_us": t["envelope_bound"] * 1e6,
        "aesgcm_us": t["aesgcm"] * 1e6,
        "fernet_us": t["fernet"] * 1e6,
        "envelope_vs_aesgcm": t["envelope"] / t["aesgcm"],
        "envelope_bound_vs_aesgcm": t["envelope_bound"] / t["aesgcm"],
        "fernet_vs_envelope": t["fernet"] / t["envelope"],
        "fernet_vs_envelope_bound": t["fernet"] / t["envelope_bound"],
    }


class _NullSink(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def _openssl_gcm_mb_per_s(seconds: int) -> float | None:
    """OpenSSL's own AES-256-GCM throughput on 16 KiB blocks, single thread, or None."""
    exe = shutil.which("openssl")
    if exe is None:
        return None
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [exe, "speed", "-evp", "aes-256-gcm", "-bytes", "16384", "-seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # OpenSSL 3 prints e.g. "AES-256-GCM    5157322.75k" (thousands of bytes per second).
    match = re.search(r"^aes-256-gcm\s+([\d.]+)k", result.stdout, re.MULTILINE | re.IGNORECASE)
    return float(match.group(1)) * 1000 / 1e6 if match else None


def _openssl_version() -> str:
    exe = shutil.which("openssl")
    if exe is None:
        return "not found"
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [exe, "version"], capture_output=True, text=True, timeout=10, check=False
    )
    return result.stdout.strip().split(" (")[0]


def _stream_benchmark(quick: bool) -> dict[str, Any]:
    size = 4 * 1024 * 1024 if quick else STREAM_BYTES
    data = os.urandom(size)
    ring = Keyring.generate("bench-stream", Suite.AES_256_GCM)
    context: dict[str, str | int] = {"table": "lab_file", "row": 1}
    sealed = io.BytesIO()
    streaming.encrypt_stream(ring, io.BytesIO(data), sealed, context)
    blob = sealed.getvalue()

    best_enc = best_dec = float("inf")
    for _ in range(1 if quick else 3):
        start = time.perf_counter()
        streaming.encrypt_stream(ring, io.BytesIO(data), _NullSink(), context)  # type: ignore[arg-type]
        best_enc = min(best_enc, time.perf_counter() - start)
        start = time.perf_counter()
        streaming.decrypt_stream(ring, io.BytesIO(blob), _NullSink(), context)  # type: ignore[arg-type]
        best_dec = min(best_dec, time.perf_counter() - start)
    # Second baseline, same library as ours: bare AESGCM over 16 KiB blocks, in process. The
    # system `openssl` may be an older OpenSSL than the one pyca/cryptography bundles.
    aesgcm = AESGCM(AESGCM.generate_key(bit_length=256))
    view = memoryview(data)
    best_bare = float("inf")
    for _ in range(1 if quick else 3):
        start = time.perf_counter()
        for offset in range(0, size, 16384):
            nonce = os.urandom(12)
            aesgcm.encrypt(nonce, view[offset : offset + 16384], None)
        best_bare = min(best_bare, time.perf_counter() - start)
    openssl = _openssl_gcm_mb_per_s(1 if quick else 3)
    enc_mb_s = size / best_enc / 1e6
    dec_mb_s = size / best_dec / 1e6
    return {
        "openssl": _openssl_version(),
        "stream_bytes": size,
        "chunk_bytes": streaming.DEFAULT_CHUNK_BYTES,
        "encrypt_mb_s": enc_mb_s,
        "decrypt_mb_s": dec_mb_s,
        "openssl_mb_s": openssl,
        "bare_aesgcm_16k_mb_s": size / best_bare / 1e6,
        "encrypt_vs_bare_aesgcm_16k": enc_mb_s / (size / best_bare / 1e6),
        "encrypt_vs_openssl": enc_mb_s / openssl if openssl else None,
        "decrypt_vs_openssl": dec_mb_s / openssl if openssl else None,
    }


def _signature_benchmark(quick: bool) -> list[dict[str, Any]]:
    results = []
    for alg in SignatureAlgorithm:
        key = SigningKey.generate(alg)
        signature = key.sign(RECORD, purpose="prescription")
        calls = 20 if quick else (300 if alg is SignatureAlgorithm.RSA_PSS_3072_SHA256 else 2000)
        t = per_call_seconds(
            {
                "sign": functools.partial(key.sign, RECORD, purpose="prescription"),
                "verify": functools.partial(
                    key.verify_key.verify, RECORD, signature, purpose="prescription"
                ),
            },
            calls=calls,
            rounds=2 if quick else 5,
        )
        results.append(
            {
                "algorithm": alg.value,
                "sign_per_s": 1 / t["sign"],
                "verify_per_s": 1 / t["verify"],
                "signature_bytes": len(signature.value),
            }
        )
    return results


def run(quick: bool = False) -> dict[str, Any]:
    field = _field_benchmark(quick)
    stream = _stream_benchmark(quick)
    signatures = _signature_benchmark(quick)
    stream_ratio = min(
        (r for r in (stream["encrypt_vs_openssl"], stream["decrypt_vs_openssl"]) if r is not None),
        default=None,
    )
    return {
        "benchmark": "crypto",
        "quick": quick,
        "field": field,
        "stream": stream,
        "signatures": signatures,
        "goals": {
            "envelope_vs_aesgcm <= 1.5": field["envelope_vs_aesgcm"] <= GOALS["vs_aesgcm_max"],
            "fernet_vs_envelope >= 5": field["fernet_vs_envelope"] >= GOALS["vs_fernet_min"],
            "stream_vs_openssl >= 0.6": (
                None if stream_ratio is None else stream_ratio >= GOALS["stream_vs_openssl_min"]
            ),
        },
    }


def render(result: dict[str, Any]) -> str:
    f, s = result["field"], result["stream"]

    def opt(value: float | None, fmt: str) -> str:
        return "n/a (openssl not found)" if value is None else format(value, fmt)

    rows = [
        ["1 KiB field: envelope enc+dec", f"{f['envelope_us']:.2f} us", "context dict per call"],
        ["1 KiB field: envelope, bound context", f"{f['envelope_bound_us']:.2f} us", ""],
        ["1 KiB field: bare AESGCM enc+dec", f"{f['aesgcm_us']:.2f} us", ""],
        ["1 KiB field: Fernet enc+dec", f"{f['fernet_us']:.2f} us", ""],
        ["envelope / bare AESGCM", f"{f['envelope_vs_aesgcm']:.2f}x", "goal <= 1.5x"],
        ["envelope (bound) / bare AESGCM", f"{f['envelope_bound_vs_aesgcm']:.2f}x", ""],
        ["Fernet / envelope (speed-up)", f"{f['fernet_vs_envelope']:.2f}x", "goal >= 5x"],
        ["Fernet / envelope (bound)", f"{f['fernet_vs_envelope_bound']:.2f}x", ""],
        [f"stream {s['stream_bytes'] >> 20} MiB encrypt", f"{s['encrypt_mb_s']:.0f} MB/s", ""],
        [f"stream {s['stream_bytes'] >> 20} MiB decrypt", f"{s['decrypt_mb_s']:.0f} MB/s", ""],
        ["openssl speed aes-256-gcm 16 KiB", opt(s["openssl_mb_s"], ".0f") + " MB/s", s["openssl"]],
        ["bare AESGCM 16 KiB blocks (in process)", f"{s['bare_aesgcm_16k_mb_s']:.0f} MB/s", ""],
        ["stream encrypt / openssl", opt(s["encrypt_vs_openssl"], ".2f"), "goal >= 0.6"],
        ["stream decrypt / openssl", opt(s["decrypt_vs_openssl"], ".2f"), "goal >= 0.6"],
        ["stream encrypt / bare AESGCM 16 KiB", f"{s['encrypt_vs_bare_aesgcm_16k']:.2f}", ""],
    ]
    for sig in result["signatures"]:
        rows.append(
            [
                f"{sig['algorithm']} sign / verify",
                f"{sig['sign_per_s']:.0f} / {sig['verify_per_s']:.0f} per s",
                f"{sig['signature_bytes']} B",
            ]
        )
    goals = ", ".join(
        f"{name}: {'n/a' if ok is None else ('met' if ok else 'MISSED')}"
        for name, ok in result["goals"].items()
    )
    note = " (quick run: small sizes, for smoke tests only)" if result["quick"] else ""
    return (
        f"carevault bench crypto{note}\n{format_table(['measure', 'value', 'note'], rows)}\n{goals}"
    )
