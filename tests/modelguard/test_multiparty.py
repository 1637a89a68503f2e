"""Multi-party scoring: three real party processes (MPyC over loopback TCP) score the logistic
model from shares; every test-set label agrees with the plaintext model; no party is handed the
weights or the features; bad input is refused with a clear reason."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from mpyc import thresha

from carevault.modelguard import multiparty as mp
from carevault.modelguard.models import LinearForm
from carevault.modelguard.multiparty_launcher import LaunchError, LocalParties, PartyRefusedError

from .conftest import Served

# Fixed point with 32 fractional bits: the revealed score is within about 1e-6 of the exact
# logit; the smallest test-set |logit| is about 0.03, so the labels are safe with a wide margin.
SCORE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def parties(served: Served) -> Iterator[LocalParties]:
    with LocalParties(mp.deal_model(served.model)) as running:
        yield running


def _recombine(rows: list[list[int]]) -> list[int]:
    p = int(mp.field().modulus)
    return [int(v) % p for v in thresha.recombine(mp.field(), list(enumerate(rows, start=1)))]


def _model_share_values(frame: bytes) -> list[int]:
    return mp.parse_model_share(frame, frame[5]).weights


def _request_values(frame: bytes, n_features: int) -> list[int]:
    return mp.parse_request(frame, n_features).shares


# --- agreement with plaintext --------------------------------------------------------------------


def test_every_test_set_label_agrees_with_plaintext_in_one_batch(
    parties: LocalParties, served: Served
) -> None:
    labels = parties.predict(served.split.X_test)
    assert labels.shape == (143,)
    assert set(np.unique(labels)) == {0, 1}
    np.testing.assert_array_equal(labels, served.pipeline.predict(served.split.X_test))


def test_every_test_set_label_agrees_with_plaintext_one_patient_at_a_time(
    parties: LocalParties, served: Served
) -> None:
    labels = [int(parties.predict(x)[0]) for x in served.split.X_test]
    np.testing.assert_array_equal(labels, served.pipeline.predict(served.split.X_test))


def test_the_revealed_score_is_the_plaintext_logit(parties: LocalParties, served: Served) -> None:
    cases = served.split.X_test[:20]
    scores = parties.predict(cases, reveal="score")
    exact = served.model.decision(cases)
    assert np.abs(scores - exact).max() < SCORE_TOLERANCE
    # The pipeline's own decision function: the folded weights are the same model.
    assert np.abs(scores - served.pipeline.decision_function(cases)).max() < SCORE_TOLERANCE


def test_a_single_patient_case_close_to_the_boundary_gets_the_plaintext_label(
    parties: LocalParties, served: Served
) -> None:
    exact = served.model.decision(served.split.X_test)
    closest = int(np.argmin(np.abs(exact)))
    assert abs(exact[closest]) < 0.1  # a real borderline case of the test set
    label = parties.predict(served.split.X_test[closest])
    assert int(label[0]) == int(exact[closest] > 0)


# --- who learns what ----------------------------------------------------------------------------


def test_no_party_is_given_the_weights_but_any_two_shares_rebuild_them(served: Served) -> None:
    frames = mp.deal_model(served.model)
    assert len(frames) == 3
    encoded = mp._to_field_ints(np.append(served.model.weights, served.model.bias))
    rows = [_model_share_values(frame) for frame in frames]
    for row in rows:
        assert len(row) == 31
        assert not set(row) & set(encoded)  # no weight travels in the clear
    assert _recombine(rows) == encoded
    # A second dealing of the same model gives every party fresh shares.
    again = [_model_share_values(frame) for frame in mp.deal_model(served.model)]
    assert all(not set(a) & set(b) for a, b in zip(rows, again, strict=True))


def test_no_party_is_given_the_features_in_the_clear(served: Served) -> None:
    client = mp.MultipartyClient(30)
    x = served.split.X_test[0]
    frames = client.share_request(x)
    encoded = mp._to_field_ints(x)
    rows = [_request_values(frame, 30) for frame in frames]
    for row in rows:
        assert not set(row) & set(encoded)
    assert _recombine(rows) == encoded


def test_each_party_replies_with_a_fresh_share_not_the_label(
    parties: LocalParties, served: Served
) -> None:
    # The same patient twice: the revealed label is the same, but no party's reply holds the
    # label's encoding (0 or 2^f), and each party's share differs from one request to the next.
    x = served.split.X_test[0]
    client = mp.MultipartyClient(30)
    first = parties.relay(client.share_request(x))
    second = parties.relay(client.share_request(x))
    encodings = {0, 1 << mp.FRAC_BITS}
    for reply in (*first, *second):
        assert not set(mp.parse_reply(reply, mp.REVEAL_LABEL, 1)) & encodings
    assert all(a != b for a, b in zip(first, second, strict=True))
    assert client.reveal(first, "label", 1)[0] == client.reveal(second, "label", 1)[0]


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "reason"),
    [
        (np.zeros(29), r"shape \(30,\) or \(patients, 30\), got \(29,\)"),
        (np.zeros((2, 3, 30)), "shape"),
        (np.full(30, np.nan), "finite"),
        (np.full(30, np.inf), "finite"),
        (np.full(30, -1.0), "between 0 and 65536"),
        (np.full(30, 1e9), "between 0 and 65536"),
        (np.zeros((0, 30)), "1 to 4096 patients"),
        (np.zeros((4097, 30)), "1 to 4096 patients"),
        (["a"] * 30, "numbers"),
    ],
)
def test_it_refuses_bad_features_before_sending_and_keeps_serving(
    parties: LocalParties, served: Served, features: object, reason: str
) -> None:
    with pytest.raises(mp.MultipartyInputError, match=reason):
        parties.predict(features)
    assert parties.running
    assert parties.predict(served.split.X_test[1]).shape == (1,)


def test_it_refuses_an_unknown_reveal(parties: LocalParties, served: Served) -> None:
    with pytest.raises(mp.MultipartyInputError, match="reveal must be one of label, score"):
        parties.predict(served.split.X_test[0], reveal="probability")
    assert parties.running


def test_the_client_refuses_a_tampered_reply_share(parties: LocalParties, served: Served) -> None:
    client = mp.MultipartyClient(30)
    replies = parties.relay(client.share_request(served.split.X_test[0]))
    tampered = bytearray(replies[1])
    tampered[-1] ^= 1
    with pytest.raises(mp.MultipartyReplyError, match="inconsistent"):
        client.reveal([replies[0], bytes(tampered), replies[2]], "label", 1)
    with pytest.raises(mp.MultipartyReplyError, match="another request"):
        client.reveal(replies, "score", 1)
    with pytest.raises(mp.MultipartyReplyError, match="expected 3 reply shares"):
        client.reveal(replies[:2], "label", 1)


def test_a_party_refuses_malformed_request_frames(served: Served) -> None:
    frame = mp.MultipartyClient(30).share_request(served.split.X_test[:2])[0]
    with pytest.raises(mp.MultipartyInputError, match="not a request frame"):
        mp.parse_request(b"XXXX" + frame[4:], 30)
    with pytest.raises(mp.MultipartyInputError, match="30 features, the model takes 29"):
        mp.parse_request(frame, 29)
    with pytest.raises(mp.MultipartyInputError, match="expected 60 shares"):
        mp.parse_request(frame[:-1], 30)
    width = mp.share_width()
    too_big = (int(mp.field().modulus)).to_bytes(width, "big")
    with pytest.raises(mp.MultipartyInputError, match="not an element of the field"):
        mp.parse_request(frame[:-width] + too_big, 30)
    header = bytearray(frame[: mp.REQUEST_HEADER.size])
    header[5] = 9
    with pytest.raises(mp.MultipartyInputError, match="unknown reveal 9"):
        mp.parse_request(bytes(header) + frame[mp.REQUEST_HEADER.size :], 30)


def test_a_party_refuses_a_model_share_meant_for_another_party_or_field(served: Served) -> None:
    frames = mp.deal_model(served.model)
    with pytest.raises(mp.MultipartyInputError, match="meant for party 1, this is party 0"):
        mp.parse_model_share(frames[1], 0)
    other_field = bytearray(frames[0])
    other_field[mp.MODEL_HEADER.size] ^= 0x01
    with pytest.raises(mp.MultipartyInputError, match="dealt in another field"):
        mp.parse_model_share(bytes(other_field), 0)


def test_the_dealer_refuses_a_model_whose_scores_could_overflow() -> None:
    with pytest.raises(mp.MultipartyInputError, match="too large for 64-bit fixed point"):
        mp.deal_model(LinearForm(np.full(30, 1e6), 0.0))
    with pytest.raises(mp.MultipartyInputError, match="finite"):
        mp.deal_model(LinearForm(np.full(30, np.nan), 0.0))


# --- processes ----------------------------------------------------------------------------------


def test_a_party_that_refuses_its_model_share_stops_the_start_with_its_reason(
    served: Served,
) -> None:
    frames = mp.deal_model(served.model)
    parties = LocalParties((frames[0], frames[2], frames[1]), start_timeout=30)
    # Both the lab and the research partner refuse; whichever answers first is reported.
    reason = r"(lab|research partner) refused \(start\): model share: meant for party [12], this"
    with pytest.raises(PartyRefusedError, match=reason):
        parties.start()
    assert parties.processes == []
    assert not parties.running


def test_parties_that_miss_the_start_deadline_are_stopped(served: Served) -> None:
    parties = LocalParties(mp.deal_model(served.model), start_timeout=0.01)
    with pytest.raises(LaunchError, match="no answer within the deadline"):
        parties.start()
    assert parties.processes == []


def test_a_refusal_among_the_parties_stops_all_three(served: Served) -> None:
    with LocalParties(mp.deal_model(served.model)) as parties:
        processes = list(parties.processes)
        requests = list(mp.MultipartyClient(30).share_request(served.split.X_test[0]))
        width = mp.share_width()
        requests[2] = requests[2][:-width] + int(mp.field().modulus).to_bytes(width, "big")
        with pytest.raises(PartyRefusedError, match="research partner refused"):
            parties.relay(requests)
        assert not parties.running
        assert all(process.poll() is not None for process in processes)
        with pytest.raises(LaunchError, match="not running"):
            parties.predict(served.split.X_test[0])


def test_a_party_listens_on_the_loopback_interface_only() -> None:
    async def bound_host() -> str:
        loop = asyncio.get_running_loop()
        mp._loopback_only(loop)
        server = await loop.create_server(asyncio.Protocol, port=0)
        host = str(server.sockets[0].getsockname()[0])
        server.close()
        await server.wait_closed()
        return host

    assert asyncio.run(bound_host()) == "127.0.0.1"


def test_the_demo_scores_test_cases_beside_the_plaintext_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from carevault.modelguard.multiparty_launcher import main

    assert main(["--cases", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("parties started and connected in")
    cases = [line.split() for line in lines[1:]]
    assert len(cases) == 3
    for words in cases:  # "case i: multi-party L, plaintext L (t ms)"
        assert words[3].rstrip(",") == words[5]
