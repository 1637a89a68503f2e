"""Homomorphic (CKKS) scoring of the logistic diagnosis model, server side (issue 7).

The doctor's tool (:mod:`.homomorphic_client`) encrypts the patient's features under a CKKS key
only it holds and sends a request; :func:`score_request` evaluates ``w · x + b`` on the
ciphertexts and returns a ciphertext. The server never holds anything that decrypts: it refuses
a context carrying the secret key, and the context it accepts carries no key at all (scoring
needs only plaintext-by-ciphertext products and plaintext additions, so no public, relinearisation
or rotation keys either). It learns neither the features nor the score.

Parameters (one set, fixed; anything else is refused): CKKS, ring degree N = 8192, coefficient
modulus 60 + 40 + 60 = 160 bits, scale 2^40. The HomomorphicEncryption.org security standard
(Albrecht et al., 2018, table for ternary secrets, classical 128-bit) allows at most 218 bits of
total modulus at N = 8192, so 160 bits is inside the 128-bit bound with margin; SEAL's own loader
enforces the same table. One multiplication by a plaintext consumes the 40-bit prime (rescale),
leaving the 60-bit prime at scale 2^40: 20 bits above the scale for the result's integer part,
and about 2^-20 of absolute precision below the scale, far under the logits' margins.

Two wire layouts (``LAYOUT_ROWS``, ``LAYOUT_COLUMNS``):

* rows: one ciphertext holds up to 128 patients, each in a block of 32 slots (30 features, 2 zero
  pads). The server multiplies by the weights tiled per block and adds a random mask per block
  whose entries sum to the bias; the client sums each block. Without rotation keys the server
  cannot add slots together, and the mask (uniform in +-2^16 per slot) hides the per-feature
  products ``w_j x_j`` that would otherwise hand the client all 30 weights in one query. One
  patient costs one 230 kB ciphertext: the single-prediction layout.
* columns: ciphertext j holds feature j of up to 4096 patients (SIMD); the server computes
  ``sum_j w_j ct_j + b`` with 30 plaintext-scalar products and returns one ciphertext whose slot
  i is exactly patient i's logit (no mask needed). The bulk layout: per-patient cost is the
  30 products divided by up to 4096 patients.

Noise (issue 14: never exact logits). Exact logits hand an equation solver the model: 31
linearly independent queries give all 30 weights and the bias. So the server blinds every
patient's score with a fresh secret factor before returning it: patient i's score comes back as
``r_i * (w · x_i + b)`` with ``r_i`` log-uniform in [1/2, 2] (``NOISE_FACTOR``), drawn per patient
and per request. The factor is folded into the plaintext weights and bias, so it costs no extra
multiplication and no level of the modulus chain. Why a positive factor rather than an additive
Gaussian: it never moves a score across zero, so the label (score >= 0, P >= 0.5) is exactly the
model's for every case, clear or borderline, while the magnitude (what an equation solver needs)
is off by up to a factor of two, independently each time, so two identical queries decrypt to
different scores. Scale choice: a factor range of 4 (±0.69 in log) makes one answer's error as
large as the spread of the logits between a typical benign and a typical malignant case (log
|logit| spans about 1.5 on the test set between its 10% and 50% quantiles), so the solved
weights are no better than a label-only fit for the attacker's query budget, while the doctor's
decrypted P(malignant) keeps its side of 0.5 and its order of magnitude (a logit of 7 comes back
between 3.5 and 14: "clearly malignant" either way). What it does not do: a client with many
queries still averages the factor out (its mean is a constant, and a scaled weight vector is the
same classifier), so the query budget, not the noise, is what bounds an extraction; the attack
lab measures both (scenario ``model.extraction-homomorphic``).

Wire format (big-endian): ``b"CVHE" | version u8 | layout u8 | patients u32 | context (u32 length
+ TenSEAL context bytes) | ciphertexts u32 | each (u32 length + TenSEAL CKKS vector bytes)``. The
reply: ``b"CVHR" | version | layout | patients u32 | one ciphertext (u32 length + bytes)``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import tenseal as ts
import tenseal.sealapi  # registers SEAL's types, so parameters can be inspected)

from .models import LinearForm

REQUEST_MAGIC = b"CVHE"
REPLY_MAGIC = b"CVHR"
VERSION = 1
LAYOUT_ROWS = 1
LAYOUT_COLUMNS = 2
LAYOUTS = {LAYOUT_ROWS: "rows", LAYOUT_COLUMNS: "columns"}

POLY_MODULUS_DEGREE = 8192
COEFF_MOD_BIT_SIZES = (60, 40, 60)
SCALE_BITS = 40
SLOTS = POLY_MODULUS_DEGREE // 2
# HomomorphicEncryption.org standard, classical 128-bit security, ternary secret: the largest
# total coefficient modulus (bits) allowed for each ring degree.
MAX_MODULUS_BITS_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}

# Mask magnitude for the rows layout: large against the per-feature products (|w_j x_j| is tens
# at most on real cases), small enough to stay 3 bits under the 2^19 ceiling of the last level.
MASK_BOUND = float(2**16)

# Per-patient blinding factor of the returned score: log-uniform in [1/NOISE_FACTOR,
# NOISE_FACTOR] (see "Noise" above). Positive, so the sign (the label) is never changed.
NOISE_FACTOR = 2.0

# Size limits checked before anything is parsed. A fresh ciphertext at these parameters is about
# 235 kB (SEAL's zstd compression; 262 kB raw); a key-less public context is about 100 bytes. A
# context is allowed up to 1 MiB so that one sent with its secret key by mistake is parsed and
# refused with the reason, instead of a size error that hides it.
MAX_CONTEXT_BYTES = 1 << 20
MAX_CIPHERTEXT_BYTES = 320 * 1024
MAX_REQUEST_BYTES = 12 << 20

HEADER = struct.Struct(">4sBBI")
LENGTH_FIELD = struct.Struct(">I")


class HomomorphicRequestError(ValueError):
    """The server refuses a request; the message says why (it never holds patient data)."""


@dataclass(frozen=True)
class Parameters:
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int

    @property
    def total_modulus_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes)


ACCEPTED = Parameters(POLY_MODULUS_DEGREE, COEFF_MOD_BIT_SIZES, SCALE_BITS)


def check_parameters(parameters: Parameters) -> None:
    """Refuse parameters below 128-bit security, then anything but the one accepted set."""
    limit = MAX_MODULUS_BITS_128.get(parameters.poly_modulus_degree)
    if limit is None:
        raise HomomorphicRequestError(
            f"ring degree {parameters.poly_modulus_degree} is not a supported CKKS ring degree"
        )
    if parameters.total_modulus_bits > limit:
        raise HomomorphicRequestError(
            f"weak parameters: a {parameters.total_modulus_bits}-bit coefficient modulus at ring "
            f"degree {parameters.poly_modulus_degree} is below 128-bit security (at most {limit} "
            "bits, HomomorphicEncryption.org standard)"
        )
    if parameters != ACCEPTED:
        raise HomomorphicRequestError(
            f"unsupported parameters: ring degree {parameters.poly_modulus_degree}, modulus "
            f"{list(parameters.coeff_mod_bit_sizes)}, scale 2^{parameters.scale_bits}; this "
            f"server accepts only ring degree {POLY_MODULUS_DEGREE}, modulus "
            f"{list(COEFF_MOD_BIT_SIZES)}, scale 2^{SCALE_BITS}"
        )


def block_size(n_features: int) -> int:
    """Slots per patient in the rows layout: the next power of two, so blocks tile the slots."""
    return 1 << max(0, n_features - 1).bit_length()


def max_patients(layout: int, n_features: int) -> int:
    if layout == LAYOUT_ROWS:
        return SLOTS // block_size(n_features)
    return SLOTS


def encode_request(
    layout: int, patients: int, context: bytes, ciphertexts: list[bytes] | tuple[bytes, ...]
) -> bytes:
    parts = [HEADER.pack(REQUEST_MAGIC, VERSION, layout, patients), LENGTH_FIELD.pack(len(context))]
    parts.append(context)
    parts.append(LENGTH_FIELD.pack(len(ciphertexts)))
    for ciphertext in ciphertexts:
        parts += [LENGTH_FIELD.pack(len(ciphertext)), ciphertext]
    return b"".join(parts)


def encode_reply(layout: int, patients: int, ciphertext: bytes) -> bytes:
    header = HEADER.pack(REPLY_MAGIC, VERSION, layout, patients)
    return header + LENGTH_FIELD.pack(len(ciphertext)) + ciphertext


class _Reader:
    """Bounds-checked reads over a byte string; every overrun is a clear refusal."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = memoryview(data)
        self.offset = 0
        self.what = what

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.offset:
            raise HomomorphicRequestError(f"malformed {self.what}: truncated")
        chunk = bytes(self.data[self.offset : self.offset + n])
        self.offset += n
        return chunk

    def length(self, limit: int, field: str) -> int:
        n = int(LENGTH_FIELD.unpack(self.take(LENGTH_FIELD.size))[0])
        if n > limit:
            raise HomomorphicRequestError(f"{field} of {n} bytes exceeds the {limit}-byte limit")
        return n

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise HomomorphicRequestError(f"malformed {self.what}: trailing bytes")


@dataclass(frozen=True)
class ParsedRequest:
    """A validated request: a key-less CKKS context and the encrypted patients."""

    layout: int
    patients: int
    context: ts.Context
    vectors: tuple[ts.CKKSVector, ...]


def _parameters_of(context: ts.Context) -> Parameters:
    parms = context.seal_context().data.key_context_data().parms()
    bits = tuple(int(m.bit_count()) for m in parms.coeff_modulus())
    scale = context.global_scale
    scale_bits = round(math.log2(scale)) if scale > 0 else 0
    if scale != 2.0**scale_bits:
        scale_bits = -1  # not a power of two: never equal to the accepted set
    return Parameters(int(parms.poly_modulus_degree()), bits, scale_bits)


def _load_context(blob: bytes) -> ts.Context:
    try:
        context = ts.context_from(blob)
    except Exception as exc:  # TenSEAL / SEAL raise ValueError or RuntimeError on bad streams
        raise HomomorphicRequestError("malformed request: the CKKS context does not parse") from exc
    if context.is_private() or context.has_secret_key():
        raise HomomorphicRequestError(
            "the request's context holds the secret key; refusing it (send the public context "
            "only: the server must never be able to decrypt)"
        )
    if context.seal_context().data.key_context_data().parms().scheme().name != "CKKS":
        raise HomomorphicRequestError("unsupported scheme: this server evaluates CKKS only")
    check_parameters(_parameters_of(context))
    # The context's flags come from the client; the evaluation below relies on these.
    context.auto_rescale = True
    context.auto_relin = True
    context.auto_mod_switch = True
    return context


def _load_vector(context: ts.Context, blob: bytes, expected_size: int) -> ts.CKKSVector:
    try:
        vector = ts.ckks_vector_from(context, blob)
    except Exception as exc:
        raise HomomorphicRequestError("malformed request: a ciphertext does not parse") from exc
    seal_cts = vector.data.ciphertext()
    if len(seal_cts) != 1:
        raise HomomorphicRequestError("malformed request: expected one ciphertext per vector")
    ct = seal_cts[0]
    first = context.seal_context().data.first_parms_id()
    if ct.parms_id() != first or ct.size() != 2 or not ct.is_ntt_form():
        raise HomomorphicRequestError(
            "unsupported ciphertext: send a fresh encryption at the top level of the modulus chain"
        )
    if ct.scale != 2.0**SCALE_BITS:
        raise HomomorphicRequestError(f"unsupported ciphertext scale; expected 2^{SCALE_BITS}")
    if vector.size() != expected_size:
        raise HomomorphicRequestError(
            f"ciphertext holds {vector.size()} values where the layout needs {expected_size}"
        )
    return vector


def parse_request(request: bytes, n_features: int) -> ParsedRequest:
    """Validate a request for a model with ``n_features`` features: size first, then the
    header, the context's keys and parameters, the framing, and every ciphertext."""
    if not isinstance(request, bytes | bytearray | memoryview):
        raise HomomorphicRequestError("a request must be bytes")
    if len(request) > MAX_REQUEST_BYTES:
        raise HomomorphicRequestError(
            f"request of {len(request)} bytes exceeds the {MAX_REQUEST_BYTES}-byte limit"
        )
    reader = _Reader(bytes(request), "request")
    magic, version, layout, patients = HEADER.unpack(reader.take(HEADER.size))
    if magic != REQUEST_MAGIC:
        raise HomomorphicRequestError("malformed request: not a CareVault homomorphic request")
    if version != VERSION:
        raise HomomorphicRequestError(f"unsupported request version {version}")
    if layout not in LAYOUTS:
        raise HomomorphicRequestError(f"unknown layout {layout}")
    limit = max_patients(layout, n_features)
    if not 1 <= patients <= limit:
        raise HomomorphicRequestError(
            f"{patients} patients in one {LAYOUTS[layout]} request; allowed 1 to {limit}"
        )
    # The context first: a wrong key or parameter set is the clearest reason to give.
    context = _load_context(reader.take(reader.length(MAX_CONTEXT_BYTES, "context")))
    (count,) = LENGTH_FIELD.unpack(reader.take(LENGTH_FIELD.size))
    expected_count = 1 if layout == LAYOUT_ROWS else n_features
    if count != expected_count:
        raise HomomorphicRequestError(
            f"{count} ciphertexts in a {LAYOUTS[layout]} request; expected {expected_count}"
        )
    blobs = [reader.take(reader.length(MAX_CIPHERTEXT_BYTES, "ciphertext")) for _ in range(count)]
    reader.finish()
    size = patients * block_size(n_features) if layout == LAYOUT_ROWS else patients
    vectors = tuple(_load_vector(context, blob, size) for blob in blobs)
    return ParsedRequest(layout, patients, context, vectors)


def _masks(
    n_features: int, patients: int, bias: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Per patient: ``n_features`` uniform values re-centred to sum to that patient's ``bias``
    (pads get 0)."""
    u = rng.uniform(-MASK_BOUND, MASK_BOUND, size=(patients, n_features))
    u += np.asarray(bias, dtype=np.float64).reshape(-1, 1) / n_features - u.mean(
        axis=1, keepdims=True
    )
    blocks = np.zeros((patients, block_size(n_features)))
    blocks[:, :n_features] = u
    return blocks.ravel()


def blinding_factors(patients: int, rng: np.random.Generator) -> np.ndarray:
    """One secret positive factor per patient, log-uniform in [1/NOISE_FACTOR, NOISE_FACTOR]."""
    spread = math.log(NOISE_FACTOR)
    return np.exp(rng.uniform(-spread, spread, size=patients))


def evaluate(
    parsed: ParsedRequest,
    model: LinearForm,
    rng: np.random.Generator | None = None,
    *,
    noise: bool = True,
) -> ts.CKKSVector:
    """The encrypted scores; with ``noise`` (the default, and what the server always uses),
    each patient's score multiplied by a fresh secret positive factor (see "Noise" above).
    ``noise=False`` gives the exact logits: for tests and benchmarks of the arithmetic only."""
    rng = rng or np.random.default_rng()
    weights = np.asarray(model.weights, dtype=np.float64)
    d = len(weights)
    factors = blinding_factors(parsed.patients, rng) if noise else np.ones(parsed.patients)
    if parsed.layout == LAYOUT_ROWS:
        tiled = np.zeros((parsed.patients, block_size(d)))
        tiled[:, :d] = weights[None, :] * factors[:, None]
        masks = _masks(d, parsed.patients, float(model.bias) * factors, rng)
        (vector,) = parsed.vectors
        return vector.mul(tiled.ravel().tolist()).add(masks.tolist())
    if not noise:
        total = parsed.vectors[0].mul(float(weights[0]))
        for j in range(1, d):
            total.add_(parsed.vectors[j].mul(float(weights[j])))
        return total.add([float(model.bias)] * parsed.patients)
    # Per-patient factors: plaintext vectors instead of scalars (the same one level).
    total = parsed.vectors[0].mul((weights[0] * factors).tolist())
    for j in range(1, d):
        total.add_(parsed.vectors[j].mul((weights[j] * factors).tolist()))
    return total.add((float(model.bias) * factors).tolist())


def score_request(
    request: bytes,
    model: LinearForm,
    *,
    rng: np.random.Generator | None = None,
    noise: bool = True,
) -> bytes:
    """The server's whole job: validate ``request``, evaluate the encrypted logit, reply.

    Transport-agnostic; the caller authenticates the client and meters its queries (the server
    cannot see the features, so the extraction monitor's geometry does not apply; the query
    budget does). ``rng`` seeds the rows layout's masks and the blinding factors (tests); by
    default fresh entropy. ``noise=False`` returns exact logits (tests of the arithmetic only).
    """
    parsed = parse_request(request, len(model.weights))
    result = evaluate(parsed, model, rng, noise=noise)
    return encode_reply(parsed.layout, parsed.patients, result.serialize())
