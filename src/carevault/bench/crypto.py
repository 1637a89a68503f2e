"""``carevault bench crypto``: the crypto core against its baselines, side by side.

* a 1 KiB field sealed and opened as a row's fields are (row context encoded once) vs a bare
  ``AESGCM`` call (goal <= 1.5x);
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
import statistics
import subprocess
import time
from typing import Any

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from carevault.crypto import Keyring, SignatureAlgorithm, SigningKey, Suite, streaming
from carevault.platform.tables import format_table

from .timing import per_call_samples, per_call_seconds

FIELD_BYTES = 1024
FIELDS_PER_ROW = 4
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
    """Encrypt+decrypt of one 1 KiB field, four ways, interleaved, medians over many rounds:

    * ``aesgcm``: a pre-built ``AESGCM``, a random 12-byte nonce, no associated data (the floor);
    * ``field``: CareVault as a row's fields are sealed: one :meth:`Keyring.row` per write of a
      row of ``FIELDS_PER_ROW`` fields and one per read (their set-up is included, spread over
      the fields), each field bound to table / column / row / patient and counted against the
      nonce budget;
    * ``envelope``: the single-field API with the context given as a dict per call;
    * ``fernet``: Fernet, the primitive of popular Django encrypted-field libraries.
    """
    field = os.urandom(FIELD_BYTES)
    row: dict[str, str | int] = {
        "table": "clinic_patient",
        "row": "0f3b2c1a-5e6d-4c7b-8a9f-1b2c3d4e5f60",
        "patient": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
    }
    columns = ("name", "address", "email", "phone")[:FIELDS_PER_ROW]
    context: dict[str, str | int] = {**row, "column": "body"}
    ring = Keyring.generate("bench", Suite.AES_256_GCM)
    aesgcm = AESGCM(AESGCM.generate_key(bit_length=256))
    fernet = Fernet(Fernet.generate_key())

    def row_fields() -> None:
        writer = ring.row(row)
        sealed = [writer.seal(column, field) for column in columns]
        reader = ring.row(row)
        for column, envelope in zip(columns, sealed, strict=True):
            reader.open(column, envelope)

    def envelope() -> None:
        ring.decrypt(ring.encrypt(field, context), context)

    def bare_aesgcm() -> None:
        nonce = os.urandom(12)
        aesgcm.decrypt(nonce, aesgcm.encrypt(nonce, field, None), None)

    def fernet_roundtrip() -> None:
        fernet.decrypt(fernet.encrypt(field))

    calls, rounds = (50, 5) if quick else (1000, 41)
    samples = per_call_samples(
        {
            "field": row_fields,
            "envelope": envelope,
            "aesgcm": bare_aesgcm,
            "fernet": fernet_roundtrip,
        },
        calls=calls,
        rounds=rounds,
    )
    samples["field"] = [t / len(columns) for t in samples["field"]]

    def ratio(a: str, b: str) -> float:
        # Median of per-round ratios: both sides of each ran in the same round.
        return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))

    return {
        "field_bytes": FIELD_BYTES,
        "fields_per_row": len(columns),
        "calls": calls,
        "rounds": rounds,
        "field_us": statistics.median(samples["field"]) * 1e6,
        "envelope_us": statistics.median(samples["envelope"]) * 1e6,
        "aesgcm_us": statistics.median(samples["aesgcm"]) * 1e6,
        "fernet_us": statistics.median(samples["fernet"]) * 1e6,
        "field_vs_aesgcm": ratio("field", "aesgcm"),
        "envelope_vs_aesgcm": ratio("envelope", "aesgcm"),
        "fernet_vs_field": ratio("fernet", "field"),
        "fernet_vs_envelope": ratio("fernet", "envelope"),
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
            "field_vs_aesgcm <= 1.5": field["field_vs_aesgcm"] <= GOALS["vs_aesgcm_max"],
            "fernet_vs_field >= 5": field["fernet_vs_field"] >= GOALS["vs_fernet_min"],
            "stream_vs_openssl >= 0.6": (
                None if stream_ratio is None else stream_ratio >= GOALS["stream_vs_openssl_min"]
            ),
        },
    }


def render(result: dict[str, Any]) -> str:
    f, s = result["field"], result["stream"]

    def opt(value: float | None, fmt: str) -> str:
        return "n/a (openssl not found)" if value is None else format(value, fmt)

    met = result["goals"]

    def verdict(name: str) -> str:
        ok = met[name]
        return "n/a" if ok is None else ("MET" if ok else "MISSED")

    per_row = f"row of {f['fields_per_row']} fields, context encoded once per row"
    rows = [
        ["1 KiB field: CareVault row path enc+dec", f"{f['field_us']:.2f} us", per_row],
        ["1 KiB field: single-field API enc+dec", f"{f['envelope_us']:.2f} us", "dict per call"],
        ["1 KiB field: bare AESGCM enc+dec", f"{f['aesgcm_us']:.2f} us", "random nonce"],
        ["1 KiB field: Fernet enc+dec", f"{f['fernet_us']:.2f} us", ""],
        [
            "row path / bare AESGCM",
            f"{f['field_vs_aesgcm']:.2f}x",
            f"goal <= 1.5x: {verdict('field_vs_aesgcm <= 1.5')}",
        ],
        ["single-field API / bare AESGCM", f"{f['envelope_vs_aesgcm']:.2f}x", ""],
        [
            "Fernet / row path (speed-up)",
            f"{f['fernet_vs_field']:.2f}x",
            f"goal >= 5x: {verdict('fernet_vs_field >= 5')}",
        ],
        ["Fernet / single-field API", f"{f['fernet_vs_envelope']:.2f}x", ""],
        [f"stream {s['stream_bytes'] >> 20} MiB encrypt", f"{s['encrypt_mb_s']:.0f} MB/s", ""],
        [f"stream {s['stream_bytes'] >> 20} MiB decrypt", f"{s['decrypt_mb_s']:.0f} MB/s", ""],
        ["openssl speed aes-256-gcm 16 KiB", opt(s["openssl_mb_s"], ".0f") + " MB/s", s["openssl"]],
        ["bare AESGCM 16 KiB blocks (in process)", f"{s['bare_aesgcm_16k_mb_s']:.0f} MB/s", ""],
        [
            "stream encrypt / openssl",
            opt(s["encrypt_vs_openssl"], ".2f"),
            f"goal >= 0.6: {verdict('stream_vs_openssl >= 0.6')}",
        ],
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
        f"{name}: {'n/a' if ok is None else ('MET' if ok else 'MISSED')}"
        for name, ok in result["goals"].items()
    )
    note = " (quick run: small sizes, for smoke tests only)" if result["quick"] else ""
    return (
        f"carevault bench crypto{note}\n{format_table(['measure', 'value', 'note'], rows)}\n{goals}"
    )
