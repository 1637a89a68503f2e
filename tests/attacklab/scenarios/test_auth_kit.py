"""The pure helpers of the authentication scenarios: packet mutators, answer classification, the
timing statistic, name lists and the spraying plan."""

from __future__ import annotations

import json
import random

import pytest

from carevault.attacklab.scenarios import _auth_kit as kit
from carevault.attacklab.scenarios.auth_packets import _wrong_contents
from carevault.attacklab.scenarios.auth_password_spraying import _plan
from carevault.attacklab.scenarios.auth_suspended_timing import Samples, normalised
from carevault.client import Response
from carevault.crypto.errors import DecryptionError, RejectedPacketError
from carevault.crypto.packets import (
    Challenge,
    LoginKey,
    LoginPacket,
    make_challenge,
    open_login_packet,
    seal_login_packet,
    seal_payload,
)

NOW = 1_000_000


@pytest.fixture(scope="module")
def challenge_and_key() -> tuple[LoginKey, Challenge]:
    key = LoginKey.generate()
    return key, make_challenge(key, now=NOW)


@pytest.fixture(scope="module")
def sealed(challenge_and_key: tuple[LoginKey, Challenge]) -> tuple[LoginKey, dict[str, str], str]:
    key, challenge = challenge_and_key
    other = make_challenge(key, now=NOW)
    packet = seal_login_packet(challenge, "doctor1", "correct horse battery", NOW)
    return key, packet, other.cid


def test_the_server_refuses_every_mutation_of_a_packet_it_opens(
    sealed: tuple[LoginKey, dict[str, str], str], challenge_and_key: tuple[LoginKey, Challenge]
) -> None:
    key, packet, other_cid = sealed
    _, challenge = challenge_and_key

    def open_(body: dict[str, str] | bytes) -> str:
        data = body if isinstance(body, bytes) else json.dumps(body)
        return open_login_packet(
            key, data, challenge.nonce, challenge.cid, expires=challenge.expires, now=NOW
        ).username

    assert open_(packet) == "doctor1"
    refused = []
    for label, altered in kit.mutations(packet, other_cid):
        try:
            open_(altered)
        except (DecryptionError, RejectedPacketError):
            refused.append(label)
    assert refused == [label for label, _ in kit.mutations(packet, other_cid)]


def test_every_mutation_changes_the_packet(sealed: tuple[LoginKey, dict[str, str], str]) -> None:
    _, packet, other_cid = sealed
    found = kit.mutations(packet, other_cid)
    assert len({label for label, _ in found}) == len(found)
    for label, altered in found:
        assert altered != packet, label


def test_structural_mutations_fail_to_parse(sealed: tuple[LoginKey, dict[str, str], str]) -> None:
    _, packet, other_cid = sealed
    parse_errors = {
        "iv one byte short",
        "ct missing",
        "extra member",
        "padded base64",
        "duplicate cid member",
        "empty body",
        "not JSON",
    }
    for label, altered in kit.mutations(packet, other_cid):
        if label not in parse_errors:
            continue
        body = altered if isinstance(altered, bytes) else json.dumps(altered)
        with pytest.raises(DecryptionError):
            LoginPacket.parse(body)


def test_flipping_a_byte_flips_exactly_one_bit_of_that_field(
    sealed: tuple[LoginKey, dict[str, str], str],
) -> None:
    _, packet, _ = sealed
    altered = kit.flip_byte(packet, "ct", -1)
    before, after = kit._unb64(packet["ct"]), kit._unb64(altered["ct"])
    assert len(before) == len(after)
    assert [i for i in range(len(before)) if before[i] != after[i]] == [len(before) - 1]
    assert bin(before[-1] ^ after[-1]).count("1") == 1
    assert {k: v for k, v in altered.items() if k != "ct"} == {
        k: v for k, v in packet.items() if k != "ct"
    }


def test_truncation_keeps_a_prefix(sealed: tuple[LoginKey, dict[str, str], str]) -> None:
    _, packet, _ = sealed
    raw = kit._unb64(packet["ct"])
    assert kit._unb64(kit.truncate(packet, "ct", -1)["ct"]) == raw[:-1]
    assert kit._unb64(kit.truncate(packet, "ct", 3)["ct"]) == raw[:3]


def test_a_duplicate_member_is_in_the_body_twice(
    sealed: tuple[LoginKey, dict[str, str], str],
) -> None:
    _, packet, other_cid = sealed
    body = kit.duplicate_member(packet, "cid", other_cid).decode()
    assert body.count('"cid"') == 2
    assert json.loads(body)["cid"] == other_cid  # a lenient parser takes the last one


def _response(status: int, body: object) -> Response:
    return Response(status, {}, json.dumps(body).encode())


def test_answers_are_classified_as_the_client_sees_them() -> None:
    assert kit.classify(_response(200, {"ok": True, "next": "/"})) == kit.ACCEPTED
    assert kit.classify(_response(400, {"ok": False, "error": "Login failed."})) == kit.FAILED
    paused = _response(429, {"ok": False, "error": "paused", "retry_after": 60})
    assert kit.classify(paused) == kit.PAUSED
    assert kit.retry_after(paused) == 60
    assert kit.classify(_response(403, {"detail": "CSRF"})) == kit.OTHER
    assert kit.classify(Response(500, {}, b"<html>")) == kit.OTHER


def test_the_sign_test_is_exact() -> None:
    assert kit.sign_test_p(5, 10) == 1.0
    assert kit.sign_test_p(10, 10) == pytest.approx(2 / 1024)
    assert kit.sign_test_p(0, 10) == pytest.approx(2 / 1024)
    assert kit.sign_test_p(1, 10) == pytest.approx(2 * 11 / 1024)
    assert kit.sign_test_p(0, 0) == 1.0


def test_noise_alone_is_not_distinguishable() -> None:
    rng = random.Random(7)
    for _ in range(50):
        a = [0.08 + rng.gauss(0, 0.01) + rng.expovariate(200) for _ in range(30)]
        b = [0.08 + rng.gauss(0, 0.01) + rng.expovariate(200) for _ in range(30)]
        assert not kit.compare_timings(a, b).distinguishable


def test_a_whole_extra_hash_is_distinguishable() -> None:
    rng = random.Random(8)
    base = [0.08 + rng.gauss(0, 0.01) for _ in range(14)]
    slower = [t + 0.05 + rng.gauss(0, 0.01) for t in base]
    verdict = kit.compare_timings(slower, base)
    assert verdict.distinguishable
    assert verdict.median_difference == pytest.approx(0.05, abs=0.01)
    assert "distinguishable" in verdict.describe("right", "wrong")


def test_a_consistent_but_tiny_difference_is_below_the_floor() -> None:
    base = [0.1 + i * 0.001 for i in range(40)]
    verdict = kit.compare_timings([t + 0.0003 for t in base], base)
    assert verdict.sign_p < 1e-3
    assert not verdict.distinguishable


def test_drift_across_rounds_cancels_in_the_pairs() -> None:
    # Load that doubles the times over the run moves both kinds alike.
    a = [0.05 * (1 + i / 10) for i in range(30)]
    b = [t * 1.001 for t in a]
    assert abs(kit.compare_timings(a, b).median_difference) < 0.001
    assert not kit.compare_timings(a, b).distinguishable


def test_no_samples_say_nothing() -> None:
    verdict = kit.compare_timings([], [])
    assert verdict.pairs == 0
    assert not verdict.distinguishable


def test_unknown_names_are_distinct_reproducible_and_not_demo_names() -> None:
    first = kit.unknown_names(random.Random(1), 40)
    assert first == kit.unknown_names(random.Random(1), 40)
    assert len(set(first)) == 40
    assert not set(first) & {"admin", "doctor1", "doctor2", "labtech1", "patient1"}


def test_the_spraying_plan_gives_most_names_to_the_first_address() -> None:
    plan = _plan(["a", "b"], [f"n{i}" for i in range(30)], 2, random.Random(3))
    assert sorted(name for _, name in plan) == sorted(["a", "b"] + [f"n{i}" for i in range(30)])
    first = sum(1 for which, _ in plan if which == 0)
    assert first > 20
    assert {which for which, _ in plan} == {0, 1}
    assert {which for which, _ in _plan(["a"], ["b", "c"], 1, random.Random(3))} == {0}


def test_a_paused_answer_is_compared_without_its_countdown() -> None:
    body = json.dumps({"ok": False, "error": "Sign-in is paused", "retry_after": 851}).encode()
    same = json.dumps({"ok": False, "error": "Sign-in is paused", "retry_after": 850}).encode()
    assert normalised(body)[0] == normalised(same)[0]
    assert normalised(body)[1] == 851
    samples = Samples(["right", "wrong"])
    attempt = kit.Attempt(kit.PAUSED, 429, body, 0.1)
    samples.round({"right": attempt, "wrong": kit.Attempt(kit.PAUSED, 429, same, 0.1)})
    assert samples.identical
    assert samples.rounds == 1
    other = kit.Attempt(kit.FAILED, 400, b'{"ok": false, "error": "Login failed."}', 0.1)
    samples.round({"right": attempt, "wrong": other})
    assert not samples.identical


def test_the_server_refuses_every_well_sealed_packet_with_wrong_contents(
    challenge_and_key: tuple[LoginKey, Challenge],
) -> None:
    key, challenge = challenge_and_key
    contents = _wrong_contents(challenge.nonce, "correct horse battery", NOW)
    assert len(contents) >= 5
    for label, payload in contents:
        packet = seal_payload(challenge, payload)
        with pytest.raises((DecryptionError, RejectedPacketError)):
            open_login_packet(
                key, packet, challenge.nonce, challenge.cid, expires=challenge.expires, now=NOW
            )
        assert label
