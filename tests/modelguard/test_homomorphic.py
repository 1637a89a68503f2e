"""Homomorphic scoring: the server evaluates the logistic model on CKKS ciphertexts it cannot
decrypt, and every test-set label agrees with the plaintext model."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tenseal as ts

from carevault.modelguard import homomorphic as he
from carevault.modelguard.homomorphic_client import (
    HomomorphicClient,
    HomomorphicReplyError,
    sigmoid,
)

from .conftest import Served

# CKKS at scale 2^40 gives about 1e-5 absolute error on these logits; the smallest test-set
# |logit| is about 0.03, so a 1e-3 tolerance is strict and still leaves the labels safe.
LOGIT_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def client() -> HomomorphicClient:
    return HomomorphicClient(30)


def _context_bytes(
    degree: int = he.POLY_MODULUS_DEGREE,
    bits: tuple[int, ...] = he.COEFF_MOD_BIT_SIZES,
    scale_bits: int = he.SCALE_BITS,
    *,
    secret: bool = False,
) -> tuple[ts.Context, bytes]:
    context = ts.context(ts.SCHEME_TYPE.CKKS, degree, coeff_mod_bit_sizes=list(bits))
    context.global_scale = 2.0**scale_bits
    blob = context.serialize(
        save_public_key=False,
        save_secret_key=secret,
        save_galois_keys=False,
        save_relin_keys=False,
    )
    return context, blob


def _rows_request(context: ts.Context, blob: bytes, x: np.ndarray) -> bytes:
    padded = np.zeros(32)
    padded[:30] = x
    vector = ts.ckks_vector(context, padded.tolist())
    return he.encode_request(he.LAYOUT_ROWS, 1, blob, [vector.serialize()])


def test_every_test_set_label_agrees_with_the_plaintext_model_one_patient_at_a_time(
    served: Served, client: HomomorphicClient
) -> None:
    X = served.split.X_test
    logits = np.array(
        [
            client.decrypt_logits(
                he.score_request(client.encrypt_rows(x), served.model, noise=False), 1
            )[0]
            for x in X
        ]
    )
    assert np.array_equal((logits > 0).astype(int), served.pipeline.predict(X))
    assert np.abs(logits - served.model.decision(X)).max() < LOGIT_TOLERANCE


def test_a_batch_in_columns_agrees_on_the_whole_test_set_and_matches_the_probabilities(
    served: Served, client: HomomorphicClient
) -> None:
    X = served.split.X_test
    reply = he.score_request(client.encrypt_columns(X), served.model, noise=False)
    proba = client.decrypt_proba(reply, len(X))
    assert np.array_equal((proba >= 0.5).astype(int), served.pipeline.predict(X))
    assert np.abs(proba - served.pipeline.predict_proba(X)[:, 1]).max() < 1e-4


def test_a_batch_in_rows_agrees_on_the_whole_test_set(
    served: Served, client: HomomorphicClient
) -> None:
    X = served.split.X_test
    per_request = he.max_patients(he.LAYOUT_ROWS, 30)
    assert per_request == 128
    logits = np.concatenate(
        [
            client.decrypt_logits(
                he.score_request(client.encrypt_rows(chunk), served.model, noise=False)
            )
            for chunk in (X[:per_request], X[per_request:])
        ]
    )
    assert np.array_equal((logits > 0).astype(int), served.pipeline.predict(X))
    assert np.abs(logits - served.model.decision(X)).max() < LOGIT_TOLERANCE


def test_the_rows_reply_hides_the_per_feature_products_behind_masks(
    served: Served, client: HomomorphicClient
) -> None:
    x = served.split.X_test[0]
    reply = he.score_request(
        client.encrypt_rows(x), served.model, rng=np.random.default_rng(5), noise=False
    )
    start = he.HEADER.size + he.LENGTH_FIELD.size
    slots = np.array(ts.ckks_vector_from(client._context, reply[start:]).decrypt())[:30]
    products = served.model.weights * x
    # Without masks each slot would be w_j x_j, handing the client every weight in one query.
    assert np.abs(slots - products).min() > 1.0
    assert abs(slots.sum() - served.model.decision(x[None])[0]) < LOGIT_TOLERANCE


def _solve(X: np.ndarray, scores: np.ndarray) -> np.ndarray:
    A = np.hstack([X, np.ones((len(X), 1))])
    col = np.abs(A).max(axis=0)
    solution, *_ = np.linalg.lstsq(A / col, scores, rcond=None)
    return np.asarray(solution / col)


def test_two_identical_queries_decrypt_to_different_scores(
    served: Served, client: HomomorphicClient
) -> None:
    # Each answer carries a fresh factor, log-uniform over a range of 4: two answers land within
    # 0.1% of each other about one time in 700, so the checks below ask for what a fresh factor
    # makes near certain (a failure about once in a million runs), never for every pair at once.
    x = served.split.X_test[0]
    request = client.encrypt_rows(x)
    answers = [client.decrypt_logits(he.score_request(request, served.model), 1)[0] for _ in "abc"]
    exact = served.model.decision(x[None])[0]
    assert _distinct_pairs(answers) >= 2
    assert any(abs(answer - exact) > LOGIT_TOLERANCE for answer in answers)
    columns = client.encrypt_columns(served.split.X_test[:8])
    a = client.decrypt_logits(he.score_request(columns, served.model))
    b = client.decrypt_logits(he.score_request(columns, served.model))
    assert np.count_nonzero(~np.isclose(a, b, rtol=1e-3, atol=0)) >= 6


def _distinct_pairs(values: list[float]) -> int:
    """How many pairs of ``values`` differ by more than 0.1%."""
    return sum(
        not np.isclose(values[i], values[j], rtol=1e-3, atol=0)
        for i in range(len(values))
        for j in range(i + 1, len(values))
    )


def test_the_noise_keeps_every_label_and_the_score_within_a_factor_of_two(
    served: Served, client: HomomorphicClient
) -> None:
    X = served.split.X_test
    noisy = client.decrypt_logits(he.score_request(client.encrypt_columns(X), served.model))
    exact = served.model.decision(X)
    # Every label, clear or borderline: the blinding factor is positive.
    assert np.array_equal((noisy > 0).astype(int), served.pipeline.predict(X))
    ratio = noisy / exact
    assert ratio.min() > 1 / he.NOISE_FACTOR - 1e-3
    assert ratio.max() < he.NOISE_FACTOR + 1e-3
    assert ratio.std() > 0.2  # really blinded, not a constant rescaling
    rows = client.decrypt_logits(he.score_request(client.encrypt_rows(X[:128]), served.model))
    assert np.array_equal((rows > 0).astype(int), served.pipeline.predict(X[:128]))


def test_equation_solving_on_noisy_scores_no_longer_recovers_the_weights(
    served: Served, client: HomomorphicClient
) -> None:
    X = served.split.X_train[:60]
    request = client.encrypt_columns(X)
    exact = client.decrypt_logits(he.score_request(request, served.model, noise=False))
    noisy = client.decrypt_logits(he.score_request(request, served.model))
    truth = np.append(served.model.weights, served.model.bias)
    error = lambda w: np.linalg.norm(w - truth) / np.linalg.norm(truth)  # noqa: E731
    assert error(_solve(X, exact)) < 1e-3  # without noise: the model, exactly
    assert error(_solve(X, noisy)) > 0.1


def test_the_request_carries_a_context_that_cannot_decrypt(
    served: Served, client: HomomorphicClient
) -> None:
    request = client.encrypt_rows(served.split.X_test[0])
    parsed = he.parse_request(request, 30)
    assert parsed.context.is_public()
    assert not parsed.context.has_secret_key()
    with pytest.raises(ValueError, match="secret"):
        parsed.vectors[0].decrypt()
    # Not even a public key: the server only multiplies and adds plaintexts.
    assert not parsed.context.has_public_key()
    assert len(client.public_context) < 1024


def test_another_clients_key_reads_only_noise_from_a_reply(
    served: Served, client: HomomorphicClient
) -> None:
    X = served.split.X_test[:20]
    reply = he.score_request(client.encrypt_columns(X), served.model)
    other = HomomorphicClient(30)
    logits = other.decrypt_logits(reply)  # another key decrypts, but to noise
    assert np.abs(logits - served.model.decision(X)).min() > 1_000.0


def test_a_context_holding_the_secret_key_is_refused(served: Served) -> None:
    context, blob = _context_bytes(secret=True)
    request = _rows_request(context, blob, served.split.X_test[0])
    with pytest.raises(he.HomomorphicRequestError, match="holds the secret key"):
        he.score_request(request, served.model)


@pytest.mark.parametrize(
    ("degree", "bits", "scale_bits"),
    [
        (16384, (60, 40, 60), 40),  # another ring degree
        (8192, (60, 40, 40, 60), 40),  # another modulus chain
        (4096, (40, 20, 40), 20),  # too little precision for these logits
        (8192, (60, 40, 60), 30),  # another scale
    ],
)
def test_parameters_other_than_the_accepted_set_are_refused(
    served: Served, degree: int, bits: tuple[int, ...], scale_bits: int
) -> None:
    context, blob = _context_bytes(degree, bits, scale_bits)
    request = _rows_request(context, blob, served.split.X_test[0])
    with pytest.raises(he.HomomorphicRequestError, match="unsupported parameters"):
        he.score_request(request, served.model)


def test_parameters_below_128_bit_security_are_refused_as_weak() -> None:
    with pytest.raises(he.HomomorphicRequestError, match=r"weak parameters.*at most 218"):
        he.check_parameters(he.Parameters(8192, (60, 60, 60, 60), 40))
    with pytest.raises(he.HomomorphicRequestError, match="ring degree 3000"):
        he.check_parameters(he.Parameters(3000, (60,), 40))
    he.check_parameters(he.ACCEPTED)
    assert he.ACCEPTED.total_modulus_bits <= he.MAX_MODULUS_BITS_128[he.POLY_MODULUS_DEGREE]


def test_a_ciphertext_below_the_top_level_is_refused(served: Served) -> None:
    context, blob = _context_bytes()
    used = ts.ckks_vector(context, [1.0] * 32) * 1.0  # one multiplication: rescaled, a level down
    request = he.encode_request(he.LAYOUT_ROWS, 1, blob, [used.serialize()])
    with pytest.raises(he.HomomorphicRequestError, match="top level"):
        he.score_request(request, served.model)


def _valid(client: HomomorphicClient, served: Served) -> bytes:
    return client.encrypt_rows(served.split.X_test[0])


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda r: b"", "truncated"),
        (lambda r: r[:100], "truncated"),
        (lambda r: b"XXXX" + r[4:], "not a CareVault"),
        (lambda r: r[:4] + bytes([9]) + r[5:], "version 9"),
        (lambda r: r[:5] + bytes([7]) + r[6:], "unknown layout 7"),
        (lambda r: r + b"\0", "trailing bytes"),
        (lambda r: r[:6] + struct.pack(">I", 129) + r[10:], "129 patients"),
        (lambda r: r[:6] + struct.pack(">I", 2) + r[10:], "holds 32 values where the layout"),
        (lambda r: r[:14] + b"\xff" * 20 + r[34:], "context does not parse"),
        (lambda r: r[:-2000] + b"\x00" * 2000, "ciphertext does not parse"),
    ],
)
def test_a_malformed_request_is_refused_with_a_clear_error(
    served: Served, client: HomomorphicClient, mangle: object, message: str
) -> None:
    request = mangle(_valid(client, served))  # type: ignore[operator]
    with pytest.raises(he.HomomorphicRequestError, match=message):
        he.score_request(request, served.model)


def test_a_columns_request_needs_one_ciphertext_per_feature(
    served: Served, client: HomomorphicClient
) -> None:
    short = client.encrypt_columns(served.split.X_test[:5])
    parsed = he.parse_request(short, 30)
    blobs = [v.serialize() for v in parsed.vectors[:29]]
    request = he.encode_request(he.LAYOUT_COLUMNS, 5, client.public_context, blobs)
    with pytest.raises(he.HomomorphicRequestError, match=r"29 ciphertexts.*expected 30"):
        he.score_request(request, served.model)


def test_an_oversized_request_or_field_is_refused_before_parsing(served: Served) -> None:
    with pytest.raises(he.HomomorphicRequestError, match=r"exceeds the .*-byte limit"):
        he.score_request(b"\0" * (he.MAX_REQUEST_BYTES + 1), served.model)
    huge = he.HEADER.pack(he.REQUEST_MAGIC, he.VERSION, he.LAYOUT_ROWS, 1)
    huge += he.LENGTH_FIELD.pack(he.MAX_CONTEXT_BYTES + 1)
    with pytest.raises(he.HomomorphicRequestError, match=r"context of .* bytes exceeds"):
        he.score_request(huge, served.model)


def test_a_malformed_reply_gives_the_client_one_opaque_error(
    served: Served, client: HomomorphicClient
) -> None:
    reply = he.score_request(_valid(client, served), served.model)
    for bad in (b"", reply[:50], b"XXXX" + reply[4:], reply + b"\0", reply[:-500] + b"\1" * 500):
        with pytest.raises(HomomorphicReplyError) as caught:
            client.decrypt_logits(bad)
        assert str(caught.value) == "the encrypted score could not be decrypted"
    with pytest.raises(HomomorphicReplyError):
        client.decrypt_logits(reply, expected_patients=2)


def test_the_client_refuses_bad_features_before_encrypting(client: HomomorphicClient) -> None:
    with pytest.raises(ValueError, match="30 features"):
        client.encrypt_rows(np.ones(29))
    with pytest.raises(ValueError, match="finite"):
        client.encrypt_rows(np.full(30, np.nan))
    with pytest.raises(ValueError, match="1 to 128"):
        client.encrypt_rows(np.ones((129, 30)))


def test_the_sigmoid_maps_logits_to_probabilities() -> None:
    assert np.allclose(sigmoid(np.array([0.0, 50.0, -50.0])), [0.5, 1.0, 0.0])
