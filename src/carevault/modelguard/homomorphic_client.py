"""The doctor's side of homomorphic scoring: the only holder of the CKKS secret key.

The client encrypts patients' features, sends a request (public, key-less context plus
ciphertexts) to :func:`carevault.modelguard.homomorphic.score_request` wherever it runs,
decrypts the encrypted logits and applies the sigmoid itself, so the server never learns the
result. One :class:`HomomorphicClient` (one key) serves any number of requests.
"""

from __future__ import annotations

import struct

import numpy as np
import tenseal as ts
from numpy.typing import NDArray

from .homomorphic import (
    COEFF_MOD_BIT_SIZES,
    HEADER,
    LAYOUT_COLUMNS,
    LAYOUT_ROWS,
    LAYOUTS,
    LENGTH_FIELD,
    POLY_MODULUS_DEGREE,
    REPLY_MAGIC,
    SCALE_BITS,
    VERSION,
    block_size,
    encode_request,
    max_patients,
)


class HomomorphicReplyError(Exception):
    """The reply could not be decrypted. Deliberately one opaque error for every cause."""

    def __init__(self) -> None:
        super().__init__("the encrypted score could not be decrypted")


def sigmoid(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64))))


class HomomorphicClient:
    """A CKKS key pair for scoring ``n_features``-feature patients on an untrusted server."""

    def __init__(self, n_features: int) -> None:
        if n_features < 1:
            raise ValueError("a model needs at least one feature")
        self.n_features = n_features
        self._context = ts.context(
            ts.SCHEME_TYPE.CKKS, POLY_MODULUS_DEGREE, coeff_mod_bit_sizes=list(COEFF_MOD_BIT_SIZES)
        )
        self._context.global_scale = 2.0**SCALE_BITS
        public = self._context.copy()
        public.make_context_public()
        # Parameters only: the server multiplies and adds plaintexts, so it needs no public,
        # relinearisation or rotation key, and a key it does not hold is one it cannot misuse.
        self._public: bytes = public.serialize(
            save_public_key=False,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        if ts.context_from(self._public).is_private():  # belt and braces: never ship the key
            raise RuntimeError("the serialised public context still holds the secret key")

    @property
    def public_context(self) -> bytes:
        return self._public

    def _matrix(self, X: NDArray[np.float64], layout: int) -> NDArray[np.float64]:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected patients x {self.n_features} features, got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("features must be finite numbers")
        limit = max_patients(layout, self.n_features)
        if not 1 <= len(X) <= limit:
            raise ValueError(f"one {LAYOUTS[layout]} request holds 1 to {limit} patients")
        return X

    def encrypt_rows(self, X: NDArray[np.float64]) -> bytes:
        """A rows-layout request: one ciphertext, up to 128 patients (one for a single one)."""
        X = self._matrix(X, LAYOUT_ROWS)
        blocks = np.zeros((len(X), block_size(self.n_features)))
        blocks[:, : self.n_features] = X
        vector = ts.ckks_vector(self._context, blocks.ravel().tolist())
        return encode_request(LAYOUT_ROWS, len(X), self._public, [vector.serialize()])

    def encrypt_columns(self, X: NDArray[np.float64]) -> bytes:
        """A columns-layout request: one ciphertext per feature, up to 4096 patients."""
        X = self._matrix(X, LAYOUT_COLUMNS)
        cts = [
            ts.ckks_vector(self._context, X[:, j].tolist()).serialize() for j in range(X.shape[1])
        ]
        return encode_request(LAYOUT_COLUMNS, len(X), self._public, cts)

    def decrypt_logits(
        self, reply: bytes, expected_patients: int | None = None
    ) -> NDArray[np.float64]:
        """The logits ``w · x + b`` from the server's reply, one per patient in request order."""
        try:
            magic, version, layout, patients = HEADER.unpack_from(reply, 0)
            (length,) = LENGTH_FIELD.unpack_from(reply, HEADER.size)
            start = HEADER.size + LENGTH_FIELD.size
            if (
                magic != REPLY_MAGIC
                or version != VERSION
                or layout not in LAYOUTS
                or len(reply) != start + length
                or (expected_patients is not None and patients != expected_patients)
            ):
                raise ValueError("bad reply framing")
            values = np.asarray(
                ts.ckks_vector_from(self._context, reply[start:]).decrypt(), dtype=np.float64
            )
            if layout == LAYOUT_ROWS:
                block = block_size(self.n_features)
                blocks = values[: patients * block].reshape(patients, block)
                logits = blocks[:, : self.n_features].sum(axis=1)
            else:
                logits = values[:patients]
            if len(logits) != patients or not np.isfinite(logits).all():
                raise ValueError("bad reply contents")
        except (ValueError, RuntimeError, TypeError, struct.error) as exc:
            raise HomomorphicReplyError() from exc
        return np.asarray(logits)

    def decrypt_proba(
        self, reply: bytes, expected_patients: int | None = None
    ) -> NDArray[np.float64]:
        """P(malignant) per patient: the sigmoid, applied here so the server never sees it."""
        return sigmoid(self.decrypt_logits(reply, expected_patients))
