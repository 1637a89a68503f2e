"""Multi-party (secret-shared) scoring of the logistic diagnosis model with MPyC (issue 7).

Three parties, each a separate process: party 0 the hospital, party 1 the lab, party 2 the
research partner. Nobody among them holds the model or the patient's features in the clear:

* The **model owner** (whoever trained the model; the dealer of the weights) splits the raw-
  feature weights and the bias of :func:`.models.linear_form` into Shamir shares, once, and hands
  each party only its own share (:func:`deal_model`). One share is a uniformly random field
  element, so it says nothing about the weights.
* The **doctor's client** (:class:`MultipartyClient`) encodes the patient's raw features as
  fixed-point numbers, splits them the same way and sends each party its share of the request.
  Raw, not standardised, features: the scaler is folded into the weights, so the client needs
  nothing of the model (its means and spreads describe the training patients and stay secret).
* The parties compute ``score = w · x + b`` jointly (MPyC secure fixed point, one truncation per
  patient), and either compare it with zero (the label, ``score > 0`` as scikit-learn decides) or
  keep it (the score, if the doctor asked for it). They re-randomise the result's sharing (MPyC's
  GRR resharing) and each sends only its share of that to the client, which recombines it. The
  three shares of a degree-1 sharing lie on one line: the client checks that, so a reply altered
  in transit or by one faulty party is refused instead of misread.

Trust assumptions: honest majority (threshold t = 1 of 3: any single party learns nothing; two
colluding parties learn everything), semi-honest (parties follow the protocol; MPyC offers no
protection against a party that deviates, and unpickles array messages from its peers, so a
malicious peer could even run code on the others). The channels between parties are plain TCP
on the loopback interface (MPyC's ``--ssl`` is not used; see docs/models-multiparty.md), and the
statistical security of MPyC's truncation and comparison masks is 2^-SEC_PARAM.

Fixed point: BIT_LENGTH-bit numbers with FRAC_BITS fractional bits (MPyC ``SecFxp``) in the prime
field MPyC derives from them, so the client and the parties agree on the field without talking;
each party checks the modulus the dealer used against its own.

This module never imports ``mpyc.runtime`` at import time: that module parses ``sys.argv`` and
sets up a runtime as a side effect, which only a party process (:func:`main`) may do.

Frames on a party's stdin / stdout (big-endian; each preceded by a u32 length):
``b"CVMW" | version u8 | party u8 | modulus (u16 length + bytes) | weights u32 | shares`` (model
share), ``b"CVMQ" | version | reveal u8 | patients u32 | features u16 | shares`` (request),
``b"CVMS"`` (stop), and from the party ``b"CVMK"`` (ready), ``b"CVMR" | version | reveal |
patients u32 | shares`` (reply) or ``b"CVME" | message`` (error; never patient data). A share is a
field element of ``share_width`` bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from mpyc import finfields, thresha
from numpy.typing import NDArray

from .models import LinearForm

PARTIES = ("hospital", "lab", "research partner")
N_PARTIES = len(PARTIES)
THRESHOLD = 1  # honest majority: (N_PARTIES - 1) // 2

BIT_LENGTH = 64
FRAC_BITS = 32
SEC_PARAM = 40
LOOPBACK = "127.0.0.1"

# Features must lie in [0, FEATURE_BOUND]: every feature of the data set is a non-negative size,
# texture or ratio (the largest, a worst-case area, is 4,254). The bound keeps every score far
# inside the fixed-point range; the dealer refuses a model whose weights could overflow it.
FEATURE_BOUND = 65536.0
MAX_PATIENTS = 4096

REVEAL_LABEL = 1
REVEAL_SCORE = 2
REVEALS = {"label": REVEAL_LABEL, "score": REVEAL_SCORE}

VERSION = 1
MODEL_MAGIC = b"CVMW"
REQUEST_MAGIC = b"CVMQ"
STOP_MAGIC = b"CVMS"
READY_MAGIC = b"CVMK"
REPLY_MAGIC = b"CVMR"
ERROR_MAGIC = b"CVME"
LENGTH = struct.Struct(">I")
MODEL_HEADER = struct.Struct(">4sBBH")
REQUEST_HEADER = struct.Struct(">4sBBIH")
REPLY_HEADER = struct.Struct(">4sBBI")
MAX_FRAME_BYTES = 64 << 20
MAX_ERROR_CHARS = 300


class MultipartyError(Exception):
    """Multi-party scoring failed; the message says why (never with patient data)."""


class MultipartyInputError(MultipartyError, ValueError):
    """A model, request or frame is malformed or out of range."""


class MultipartyReplyError(MultipartyError):
    """The parties' reply shares do not recombine into a valid result."""


Field = Any  # an MPyC prime field class (finfields.GF(...)); MPyC ships no type hints


@functools.cache
def field() -> Field:
    """The prime field of MPyC's SecFxp(BIT_LENGTH, FRAC_BITS) at security parameter SEC_PARAM.

    The same derivation as ``mpyc.sectypes._pfield`` (a prime of l + f + k + 2 bits): the client
    computes it alone and every party checks it against the runtime's own.
    """
    return finfields.GF(finfields.find_prime_root(BIT_LENGTH + FRAC_BITS + SEC_PARAM + 2, n=2))


def share_width() -> int:
    return (int(field().modulus).bit_length() + 7) // 8


def _to_field_ints(values: NDArray[np.float64]) -> list[int]:
    """Fixed-point encoding: round(v * 2^f), negative values as p - |.|."""
    p = int(field().modulus)
    scaled = np.rint(np.asarray(values, dtype=np.float64).ravel() * float(1 << FRAC_BITS))
    return [int(v) % p for v in scaled]


def _from_field_ints(values: Sequence[int]) -> NDArray[np.float64]:
    p = int(field().modulus)
    signed = [v - p if v > p // 2 else v for v in values]
    return np.array([v / float(1 << FRAC_BITS) for v in signed], dtype=np.float64)


def _split(values: list[int]) -> list[list[int]]:
    """Shamir shares (degree THRESHOLD) of each value, one list per party (MPyC's own split)."""
    if not values:
        return [[] for _ in range(N_PARTIES)]
    shares = thresha.random_split(field(), values, THRESHOLD, N_PARTIES)
    return [[int(s) for s in row] for row in shares]


def _pack(values: Sequence[int]) -> bytes:
    width = share_width()
    return b"".join(v.to_bytes(width, "big") for v in values)


def _unpack(blob: bytes, count: int, what: str) -> list[int]:
    width = share_width()
    if len(blob) != count * width:
        raise MultipartyInputError(
            f"{what}: expected {count} shares of {width} bytes, got {len(blob)} bytes"
        )
    p = int(field().modulus)
    values = [int.from_bytes(blob[i : i + width], "big") for i in range(0, len(blob), width)]
    if any(v >= p for v in values):
        raise MultipartyInputError(f"{what}: a share is not an element of the field")
    return values


# --- the model owner (dealer) ---------------------------------------------------------------


def check_model(model: LinearForm) -> tuple[NDArray[np.float64], float]:
    """Weights and bias, refused when non-finite or when a score could leave the number range."""
    weights = np.asarray(model.weights, dtype=np.float64)
    if weights.ndim != 1 or not 1 <= weights.size <= 1024:
        raise MultipartyInputError("the model needs a flat vector of 1 to 1024 weights")
    bias = float(model.bias)
    if not (np.all(np.isfinite(weights)) and math.isfinite(bias)):
        raise MultipartyInputError("the model's weights and bias must be finite numbers")
    # The largest score any valid request can produce must stay 2 bits under the integer range
    # of the fixed-point format (MPyC's comparison needs the value inside 2^(l - f - 1)).
    largest = float(np.abs(weights).sum()) * FEATURE_BOUND + abs(bias)
    if largest >= 2.0 ** (BIT_LENGTH - FRAC_BITS - 2):
        raise MultipartyInputError(
            f"the model's weights are too large for {BIT_LENGTH}-bit fixed point: scores up to "
            f"{largest:.3g} are possible"
        )
    return weights, bias


def deal_model(model: LinearForm) -> tuple[bytes, ...]:
    """The model owner's one-time split: one model-share frame per party, in party order.

    Each frame holds that party's shares of ``(w_1, ..., w_k, b)``; the bias rides as the
    weight of a constant feature 1 that every party appends to its feature shares.
    """
    weights, bias = check_model(model)
    rows = _split(_to_field_ints(np.append(weights, bias)))
    modulus = int(field().modulus)
    modulus_bytes = modulus.to_bytes((modulus.bit_length() + 7) // 8, "big")
    frames = []
    for party, row in enumerate(rows):
        header = MODEL_HEADER.pack(MODEL_MAGIC, VERSION, party, len(modulus_bytes))
        frames.append(
            header + modulus_bytes + LENGTH.pack(len(row) - 1) + _pack(row)  # weights excl. bias
        )
    return tuple(frames)


@dataclass(frozen=True)
class ModelShare:
    """One party's share of the model (what a party holds; never the weights)."""

    party: int
    weights: list[int]  # shares of w_1..w_k then b

    @property
    def n_features(self) -> int:
        return len(self.weights) - 1


def parse_model_share(frame: bytes, party: int) -> ModelShare:
    if len(frame) < MODEL_HEADER.size:
        raise MultipartyInputError("model share: frame too short")
    magic, version, index, modulus_length = MODEL_HEADER.unpack_from(frame)
    if magic != MODEL_MAGIC:
        raise MultipartyInputError("model share: not a model-share frame")
    if version != VERSION:
        raise MultipartyInputError(f"model share: unsupported version {version}")
    if index != party:
        raise MultipartyInputError(f"model share: meant for party {index}, this is party {party}")
    offset = MODEL_HEADER.size
    modulus = int.from_bytes(frame[offset : offset + modulus_length], "big")
    if modulus != int(field().modulus):
        raise MultipartyInputError(
            "model share: dealt in another field (fixed-point or security parameters differ)"
        )
    offset += modulus_length
    if len(frame) < offset + LENGTH.size:
        raise MultipartyInputError("model share: frame too short")
    (n_weights,) = LENGTH.unpack_from(frame, offset)
    if not 1 <= n_weights <= 1024:
        raise MultipartyInputError(f"model share: {n_weights} weights is out of range")
    shares = _unpack(frame[offset + LENGTH.size :], n_weights + 1, "model share")
    return ModelShare(party, shares)


# --- the doctor's client -----------------------------------------------------------------------


def check_features(X: object, n_features: int) -> NDArray[np.float64]:
    """One patient (k,) or a batch (n, k) of raw features, refused with a clear reason."""
    try:
        array = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise MultipartyInputError("features must be numbers") from None
    given = array.shape
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != n_features:
        raise MultipartyInputError(
            f"features must have shape ({n_features},) or (patients, {n_features}), got {given}"
        )
    if not 1 <= array.shape[0] <= MAX_PATIENTS:
        raise MultipartyInputError(
            f"a request holds 1 to {MAX_PATIENTS} patients, got {array.shape[0]}"
        )
    if not np.all(np.isfinite(array)):
        raise MultipartyInputError("features must be finite numbers")
    if array.min() < 0 or array.max() > FEATURE_BOUND:
        raise MultipartyInputError(f"features must lie between 0 and {FEATURE_BOUND:g}")
    return array


class MultipartyClient:
    """The doctor's side: shares a request among the parties, recombines their reply."""

    def __init__(self, n_features: int) -> None:
        if not 1 <= n_features <= 1024:
            raise MultipartyInputError(f"{n_features} features is out of range")
        self.n_features = n_features

    def share_request(self, X: object, reveal: str = "label") -> tuple[bytes, ...]:
        """One request frame per party, in party order; each holds only that party's shares."""
        if reveal not in REVEALS:
            raise MultipartyInputError(
                f"reveal must be one of {', '.join(REVEALS)}, got {reveal!r}"
            )
        array = check_features(X, self.n_features)
        header = REQUEST_HEADER.pack(
            REQUEST_MAGIC, VERSION, REVEALS[reveal], array.shape[0], self.n_features
        )
        return tuple(header + _pack(row) for row in _split(_to_field_ints(array)))

    def reveal(self, replies: Sequence[bytes], reveal: str, patients: int) -> NDArray[Any]:
        """Recombine the three reply shares: labels (0/1 ints) or scores (floats)."""
        if len(replies) != N_PARTIES:
            raise MultipartyReplyError(f"expected {N_PARTIES} reply shares, got {len(replies)}")
        rows = [parse_reply(reply, REVEALS[reveal], patients) for reply in replies]
        F = field()
        p = int(F.modulus)
        # MPyC recombines plain ints without reducing them: reduce, then compare.
        values = [int(v) % p for v in thresha.recombine(F, [(1, rows[0]), (2, rows[1])])]
        check = [int(v) % p for v in thresha.recombine(F, [(2, rows[1]), (3, rows[2])])]
        if values != check:
            raise MultipartyReplyError("the parties' reply shares are inconsistent")
        result = _from_field_ints(values)
        if reveal == "score":
            return result
        if not np.all((result == 0.0) | (result == 1.0)):
            raise MultipartyReplyError("the parties' reply is not a label")
        return result.astype(np.int64)


def parse_reply(frame: bytes, reveal: int, patients: int) -> list[int]:
    if len(frame) >= len(ERROR_MAGIC) and frame[: len(ERROR_MAGIC)] == ERROR_MAGIC:
        raise MultipartyReplyError(
            "a party refused: " + frame[4 : 4 + MAX_ERROR_CHARS].decode("utf-8", "replace")
        )
    if len(frame) < REPLY_HEADER.size:
        raise MultipartyReplyError("reply: frame too short")
    magic, version, kind, count = REPLY_HEADER.unpack_from(frame)
    if magic != REPLY_MAGIC or version != VERSION:
        raise MultipartyReplyError("reply: not a reply frame of this version")
    if kind != reveal or count != patients:
        raise MultipartyReplyError("reply: answers another request")
    try:
        return _unpack(frame[REPLY_HEADER.size :], patients, "reply")
    except MultipartyInputError as exc:
        raise MultipartyReplyError(str(exc)) from None


# --- a party ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    reveal: int
    patients: int
    shares: list[int]  # patients x features, row-major


def parse_request(frame: bytes, n_features: int) -> Request:
    if len(frame) < REQUEST_HEADER.size:
        raise MultipartyInputError("request: frame too short")
    magic, version, reveal, patients, features = REQUEST_HEADER.unpack_from(frame)
    if magic != REQUEST_MAGIC:
        raise MultipartyInputError("request: not a request frame")
    if version != VERSION:
        raise MultipartyInputError(f"request: unsupported version {version}")
    if reveal not in REVEALS.values():
        raise MultipartyInputError(f"request: unknown reveal {reveal}")
    if not 1 <= patients <= MAX_PATIENTS:
        raise MultipartyInputError(f"request: {patients} patients is out of range")
    if features != n_features:
        raise MultipartyInputError(f"request: {features} features, the model takes {n_features}")
    shares = _unpack(frame[REQUEST_HEADER.size :], patients * features, "request")
    return Request(reveal, patients, shares)


def error_frame(message: str) -> bytes:
    return ERROR_MAGIC + message[:MAX_ERROR_CHARS].encode("utf-8", "replace")


def read_frame(stream: BinaryIO) -> bytes | None:
    """One length-prefixed frame, or None at end of stream."""
    head = stream.read(LENGTH.size)
    if not head:
        return None
    if len(head) != LENGTH.size:
        raise MultipartyInputError("truncated frame length")
    (length,) = LENGTH.unpack(head)
    if length > MAX_FRAME_BYTES:
        raise MultipartyInputError(f"frame of {length} bytes is over the limit")
    body = stream.read(length)
    if len(body) != length:
        raise MultipartyInputError("truncated frame")
    return body


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(LENGTH.pack(len(payload)) + payload)
    stream.flush()


def mpyc_arguments(party: int, ports: Sequence[int]) -> list[str]:
    """MPyC's own command line for one party: its index, every party's loopback address."""
    arguments = ["-I", str(party), "-K", str(SEC_PARAM), "--no-log"]
    for port in ports:
        arguments += ["-P", f"{LOOPBACK}:{port}"]
    return arguments


class _Party:
    """The MPC program one party runs: holds its model share, scores requests with its peers."""

    def __init__(self, mpc: Any, model: ModelShare) -> None:
        self.mpc = mpc
        self.secfxp = mpc.SecFxp(BIT_LENGTH, FRAC_BITS)
        if int(self.secfxp.field.modulus) != int(field().modulus):
            raise MultipartyInputError("this party's MPyC field differs from the dealer's")
        F = self.secfxp.field
        self.n_features = model.n_features
        self.weights = self.secfxp.array(F.array(np.array(model.weights, dtype=object)))
        self.weights.integral = False

    async def score(self, request: Request) -> bytes:
        mpc, secfxp = self.mpc, self.secfxp
        F = secfxp.field
        one = 1 << FRAC_BITS  # the public constant 1 is its own share (a constant polynomial)
        rows = np.array(request.shares, dtype=object).reshape(request.patients, self.n_features)
        rows = np.hstack([rows, np.full((request.patients, 1), one, dtype=object)])
        X = secfxp.array(F.array(rows))
        # Every party must mark the shares alike: MPyC skips the truncation of products of
        # "integral" values, and parties that disagree on it fall out of step.
        X.integral = False
        scores = X @ self.weights
        result = scores > 0 if request.reveal == REVEAL_LABEL else scores
        # A fresh random sharing of the result, so the client's three shares carry nothing of
        # the intermediate sharings they were computed from.
        result = mpc._reshare(result)
        share = await mpc.gather(result)
        values = [int(v) for v in np.asarray(share.value).ravel()]
        header = REPLY_HEADER.pack(REPLY_MAGIC, VERSION, request.reveal, request.patients)
        return header + _pack(values)


def _loopback_only(loop: asyncio.AbstractEventLoop) -> None:
    """MPyC listens with ``create_server(port=...)``, i.e. on every interface; bind loopback."""
    create_server = loop.create_server

    async def loopback_server(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("host", LOOPBACK)
        return await create_server(*args, **kwargs)

    loop.create_server = loopback_server  # type: ignore[method-assign]


def serve(party: int, ports: Sequence[int], stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Run one party until the launcher says stop; returns the process exit code."""
    try:
        frame = read_frame(stdin)
        if frame is None:
            raise MultipartyInputError("no model share was sent")
        model = parse_model_share(frame, party)
        sys.argv = [sys.argv[0], *mpyc_arguments(party, ports)]
        from mpyc.runtime import mpc  # imported here: it parses sys.argv (see above)

        _loopback_only(mpc._loop)
        program = _Party(mpc, model)
        mpc.run(mpc.start())
        write_frame(stdout, READY_MAGIC)
        while (frame := read_frame(stdin)) is not None and frame != STOP_MAGIC:
            request = parse_request(frame, program.n_features)
            write_frame(stdout, mpc.run(program.score(request)))
        mpc.run(mpc.shutdown())
    except MultipartyError as exc:
        write_frame(stdout, error_frame(str(exc)))
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m carevault.modelguard.multiparty --party I --ports P0,P1,P2`` (the launcher's)."""
    parser = argparse.ArgumentParser(description="one party of CareVault's multi-party scoring")
    parser.add_argument("--party", type=int, required=True, choices=range(N_PARTIES))
    parser.add_argument("--ports", required=True, help="every party's loopback port, in order")
    options = parser.parse_args(argv)
    ports = [int(p) for p in options.ports.split(",")]
    if len(ports) != N_PARTIES or not all(1024 <= p <= 65535 for p in ports):
        parser.error(f"--ports needs {N_PARTIES} ports between 1024 and 65535")
    # The protocol owns the real stdout; anything else printed (a library's stray output) goes to
    # stderr, where it cannot corrupt a frame.
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return serve(options.party, ports, sys.stdin.buffer, protocol_out)


if __name__ == "__main__":
    sys.exit(main())
