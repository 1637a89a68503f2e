"""Malformed ciphertexts and keys of the wrong size, at the two endpoints that take encrypted
payloads: the homomorphic scoring API and the login packet.

* ``POST /api/v1/models/diagnosis/homomorphic`` (a doctor's account, here ``doctor2``): a valid
  CKKS request is built with the doctor's own client (carevault.modelguard.homomorphic_client,
  the client a doctor runs; it needs TenSEAL) and then broken: wrong content type, empty,
  another magic, version, layout, patient counts of 0 and 2^32-1, a context length of 4 GiB, a
  truncated body, trailing bytes, a garbage context and ciphertext, a thousand ciphertexts, a
  context of another ring degree (a key of another length), a context holding its secret key,
  and a body just over the 12 MiB limit. One valid request is sent as the control.
* ``POST /accounts/login/packet/`` (anonymous): packets whose ephemeral key is 33, 64 or 97
  bytes or a 65-byte point off the curve, whose IV is 8 or 16 bytes, whose ciphertext is
  shorter than its tag or longer than the limit, with an extra field, or larger than any packet.

Held: every malformed payload answered with a 4xx (400 "Login failed." for packets, or 429 once
the address's forged-packet limit is reached), none with a 5xx or a success, and the server
still healthy. Whether the AI layer raised an incident is reported (it has rules for broken
ciphertext headers and foreign key lengths), not required.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.scenario import Outcome, Scenario
from carevault.attacklab.target import AttackClient
from carevault.client import LoginFailed
from carevault.crypto.packets import b64url

from ._lab_session import healthy

DOCTOR = "doctor2"
HE_PATH = "/api/v1/models/diagnosis/homomorphic"
N_FEATURES = 30
HEADER = struct.Struct(">4sBBI")  # the wire format of carevault.modelguard.homomorphic
LENGTH = struct.Struct(">I")
MAX_REQUEST_BYTES = 12 << 20


def split_request(body: bytes) -> tuple[tuple[bytes, int, int, int], bytes, list[bytes]]:
    """(header fields, context, ciphertexts) of a well-formed homomorphic request."""
    magic, version, layout, patients = HEADER.unpack_from(body, 0)
    at = HEADER.size
    (n,) = LENGTH.unpack_from(body, at)
    context = body[at + LENGTH.size : at + LENGTH.size + n]
    at += LENGTH.size + n
    (count,) = LENGTH.unpack_from(body, at)
    at += LENGTH.size
    blobs = []
    for _ in range(count):
        (n,) = LENGTH.unpack_from(body, at)
        blobs.append(body[at + LENGTH.size : at + LENGTH.size + n])
        at += LENGTH.size + n
    return (magic, version, layout, patients), context, blobs


def join_request(
    header: tuple[bytes, int, int, int],
    context: bytes,
    blobs: list[bytes],
    count: int | None = None,
) -> bytes:
    parts = [HEADER.pack(*header), LENGTH.pack(len(context)), context]
    parts.append(LENGTH.pack(len(blobs) if count is None else count))
    for blob in blobs:
        parts += [LENGTH.pack(len(blob)), blob]
    return b"".join(parts)


def he_mutations(valid: bytes, rng: Any) -> dict[str, tuple[str, bytes]]:
    """Broken variants of a valid request: name -> (content type, body)."""
    header, context, blobs = split_request(valid)
    magic, version, layout, patients = header
    octet = "application/octet-stream"
    junk = bytes(rng.getrandbits(8) for _ in range(256))
    top = 2**32 - 1

    def with_header(*fields: Any) -> bytes:
        return join_request((fields[0], fields[1], fields[2], fields[3]), context, blobs)

    return {
        "JSON content type": ("application/json", valid),
        "empty body": (octet, b""),
        "shorter than a header": (octet, valid[:7]),
        "another magic": (
            octet,
            join_request((b"EVIL", version, layout, patients), context, blobs),
        ),
        "unknown version": (octet, with_header(magic, 9, layout, patients)),
        "unknown layout": (octet, with_header(magic, version, 7, patients)),
        "zero patients": (octet, with_header(magic, version, layout, 0)),
        "2^32-1 patients": (
            octet,
            join_request((magic, version, layout, 2**32 - 1), context, blobs),
        ),
        "context length 4 GiB": (
            octet,
            HEADER.pack(*header) + LENGTH.pack(top) + context[:64],
        ),
        "truncated": (octet, valid[: len(valid) // 2]),
        "trailing bytes": (octet, valid + b"\x00" * 16),
        "garbage context": (octet, join_request(header, junk, blobs)),
        "garbage ciphertext": (octet, join_request(header, context, [junk * 4])),
        "a thousand ciphertexts": (octet, join_request(header, context, blobs, count=1000)),
        "just over 12 MiB": (octet, valid + b"\x00" * (MAX_REQUEST_BYTES + 1 - len(valid))),
    }


def _tenseal_cases(valid: bytes) -> dict[str, tuple[str, bytes]]:
    """Contexts of other key sizes and one holding its secret key (TenSEAL, client side)."""
    import tenseal as ts

    header, _context, blobs = split_request(valid)
    cases: dict[str, tuple[str, bytes]] = {}
    for degree, sizes in ((4096, [40, 20, 40]), (16384, [60, 40, 40, 60])):
        other = ts.context(ts.SCHEME_TYPE.CKKS, degree, coeff_mod_bit_sizes=sizes)
        other.global_scale = 2.0**40
        public = other.copy()
        public.make_context_public()
        blob = public.serialize(
            save_public_key=False, save_galois_keys=False, save_relin_keys=False
        )
        cases[f"ring degree {degree} context"] = (
            "application/octet-stream",
            join_request(header, blob, blobs),
        )
    private = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 60])
    private.global_scale = 2.0**40
    secret = private.serialize(save_secret_key=True, save_galois_keys=False, save_relin_keys=False)
    cases["context with its secret key"] = (
        "application/octet-stream",
        join_request(header, secret, blobs),
    )
    return cases


def packet_mutations(packet: dict[str, str], rng: Any) -> dict[str, Callable[[], bytes]]:
    """Broken variants of a sealed login packet (each built from a fresh one by the caller)."""

    def changed(**fields: str) -> bytes:
        return json.dumps({**packet, **fields}).encode()

    def rand(n: int) -> bytes:
        return bytes(rng.getrandbits(8) for _ in range(n))

    return {
        "33-byte (compressed) key": lambda: changed(epk=b64url(b"\x02" + rand(32))),
        "64-byte key": lambda: changed(epk=b64url(rand(64))),
        "97-byte (P-384 sized) key": lambda: changed(epk=b64url(b"\x04" + rand(96))),
        "65-byte point off the curve": lambda: changed(epk=b64url(b"\x04" + b"\x01" * 64)),
        "8-byte IV": lambda: changed(iv=b64url(rand(8))),
        "16-byte IV": lambda: changed(iv=b64url(rand(16))),
        "ciphertext shorter than its tag": lambda: changed(ct=b64url(rand(10))),
        "ciphertext over the limit": lambda: changed(ct=b64url(rand(5000))),
        "extra field": lambda: json.dumps({**packet, "alg": "none"}).encode(),
        "packet over 8 kB": lambda: changed(ct=packet["ct"] + "A" * 9000),
    }


def _post(client: AttackClient, path: str, content_type: str, body: bytes) -> int:
    if client.csrf_token() is None:
        client.get("/accounts/login/")
    return client.request(
        "POST",
        path,
        body=body,
        headers={
            "Content-Type": content_type,
            "Accept": "application/json",
            "Origin": client.base_url,
            "Referer": client.base_url + "/",
            "X-CSRFToken": client.csrf_token() or "",
        },
    ).status


def run(ctx: Context) -> Outcome:
    findings: list[str] = []
    statuses: dict[str, int] = {}
    ctx.accounts.add(DOCTOR)
    doctor = ctx.client(0)
    try:
        doctor.login(DOCTOR, ctx.password(DOCTOR))
    except (LoginFailed, RuntimeError) as exc:
        return Outcome(held=False, findings=[f"the attacker's doctor could not log in: {exc}"])

    control: int | None = None
    try:
        import numpy as np

        from carevault.modelguard.homomorphic_client import HomomorphicClient

        valid = HomomorphicClient(N_FEATURES).encrypt_rows(np.full((1, N_FEATURES), 0.5))
        he_cases = he_mutations(valid, ctx.rng)
        he_cases.update(_tenseal_cases(valid))
    except ImportError:
        valid, he_cases = b"", {}
        findings.append("TenSEAL is not installed here: homomorphic cases skipped")
    for what, (content_type, body) in he_cases.items():
        if not ctx.within_bounds(reserve=14):
            findings.append("homomorphic cases stopped at the bounds")
            break
        statuses[f"HE: {what}"] = _post(doctor, HE_PATH, content_type, body)
    if valid and ctx.within_bounds(reserve=14):
        control = _post(doctor, HE_PATH, "application/octet-stream", valid)

    sender = ctx.client(1)
    sender.get("/accounts/login/")
    packets = 0
    for what in packet_mutations({"cid": "", "epk": "", "iv": "", "ct": ""}, ctx.rng):
        if not ctx.within_bounds(reserve=3):
            findings.append("packet cases stopped at the bounds")
            break
        try:
            sealed = sender.seal("patient3", "not-the-password")
        except RuntimeError:
            statuses[f"packet: {what}"] = 429  # no challenge: the address is rate limited
            continue
        body = packet_mutations(sealed, ctx.rng)[what]()
        statuses[f"packet: {what}"] = _post(
            sender, "/accounts/login/packet/", "application/json", body
        )
        packets += 1
    alive = healthy(sender)

    accepted = sorted(w for w, s in statuses.items() if s < 400)
    errors = sorted(w for w, s in statuses.items() if s >= 500)
    throttled = sum(s == 429 for s in statuses.values())
    findings.insert(
        0,
        f"{sum(400 <= s < 500 for s in statuses.values())} of {len(statuses)} malformed "
        f"payloads answered 4xx ({throttled} of them 429); valid control request: "
        f"{'HTTP ' + str(control) if control is not None else 'not sent'}",
    )
    findings += [f"accepted: {w}" for w in accepted]
    findings += [f"server error on: {w}" for w in errors]
    if not alive:
        findings.append("the server no longer answers /healthz")
    defences = []
    if any(s == 400 or s == 413 for w, s in statuses.items() if w.startswith("HE")):
        defences.append("input validation")
    if any(400 <= s < 500 for w, s in statuses.items() if w.startswith("packet")):
        defences.append("packet check")
    if throttled:
        defences.append("throttle")
    return Outcome(
        held=not accepted and not errors and alive and bool(statuses),
        defences=defences,
        findings=findings,
        metrics={"statuses": statuses, "control_status": control, "packets_sent": packets},
    )


SCENARIO = Scenario(
    name="upload.malformed-ciphertext",
    category="uploads",
    attacks=(
        "malformed homomorphic requests (headers, lengths, ring degrees, secret keys, size) "
        "and login packets with keys, IVs and ciphertexts of the wrong size"
    ),
    held_means="every malformed payload answered with a 4xx, none with a 5xx or a success",
    bounds=Bounds(requests=80, seconds=120),
    quick_bounds=Bounds(requests=60, seconds=60),
    run=run,
    # The AI layer has rules for broken ciphertext headers and foreign key lengths in submitted
    # data (security/rules.py); whether refused payloads reach it is what this reports.
    expect_detection=True,
)
