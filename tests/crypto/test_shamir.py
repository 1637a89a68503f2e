"""Shamir k-of-n splitting of the master key: any k shares recover it, fewer recover nothing,
and the mistakes people make with paper shares are caught with a clear message."""

from __future__ import annotations

import dataclasses
import itertools
import os
import struct

import pytest
from Crypto.Protocol.SecretSharing import Shamir, _Element

from carevault.crypto import SecretBytes, Share, ShareError, recover_secret, split_secret

BLOCK = 16


def padded(secret: bytes) -> bytes:
    """The blocks that are actually shared: length prefix, secret, zero padding."""
    data = struct.pack(">I", len(secret)) + secret
    return data + b"\x00" * (-len(data) % BLOCK)


def combine_raw(shares: list[Share]) -> bytes:
    """Plain Lagrange interpolation of the payloads, block by block, with no checks at all."""
    length = len(shares[0].payload)
    return b"".join(
        Shamir.combine([(s.index, s.payload[i : i + BLOCK]) for s in shares])
        for i in range(0, length, BLOCK)
    )


def retext(share: Share, **changes: object) -> str:
    """A share edited and re-encoded with a *valid* checksum: a forgery, not a typo."""
    return dataclasses.replace(share, **changes).to_text()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def secret() -> bytes:
    return os.urandom(32)


@pytest.fixture(scope="module")
def shares(secret: bytes) -> list[Share]:
    return split_secret(SecretBytes(secret), 3, 5)


# -- recovery --------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 16, 32, 123])
def test_every_k_subset_of_a_3_of_5_split_recovers_the_secret(length: int) -> None:
    secret = os.urandom(length)
    shares = split_secret(SecretBytes(secret), 3, 5)

    for subset in itertools.combinations(shares, 3):
        assert recover_secret(subset) == SecretBytes(secret)
        assert recover_secret(reversed(subset)) == SecretBytes(secret)


def test_more_than_k_shares_recover_the_secret(secret: bytes, shares: list[Share]) -> None:
    assert recover_secret(shares) == SecretBytes(secret)
    assert recover_secret(shares[:4]) == SecretBytes(secret)


def test_shares_recover_from_their_text_form(secret: bytes, shares: list[Share]) -> None:
    texts = [s.to_text() for s in shares[1:4]]

    assert all(t.startswith("cvshare1-") for t in texts)
    assert recover_secret(texts) == SecretBytes(secret)
    assert [Share.from_text(t) for t in texts] == shares[1:4]


def test_a_split_describes_itself(shares: list[Share]) -> None:
    assert [s.index for s in shares] == [1, 2, 3, 4, 5]
    assert {(s.threshold, s.total) for s in shares} == {(3, 5)}
    assert len({s.set_id for s in shares}) == 1
    assert len({s.payload for s in shares}) == 5


def test_a_maximal_split_of_255_shares_works() -> None:
    secret = os.urandom(32)
    shares = split_secret(SecretBytes(secret), 2, 255)

    assert recover_secret([shares[0], shares[254]]) == SecretBytes(secret)


# -- fewer than k shares -------------------------------------------------------------------------


def test_k_minus_one_shares_are_refused(shares: list[Share]) -> None:
    with pytest.raises(ShareError, match="2 distinct share\\(s\\) given; this split needs 3"):
        recover_secret(shares[:2])


def test_no_shares_are_refused() -> None:
    with pytest.raises(ShareError, match="no shares"):
        recover_secret([])


def test_k_minus_one_shares_interpolate_to_something_unrelated(
    secret: bytes, shares: list[Share]
) -> None:
    # Bypassing every check of recover_secret: plain interpolation of two shares of a 3-of-5
    # split gives a value, but not the secret, nor any part of it.
    for pair in itertools.combinations(shares, 2):
        guess = combine_raw(list(pair))
        assert guess != padded(secret)
        assert secret[:8] not in guess


def test_shares_are_randomised_on_every_split(secret: bytes) -> None:
    # The same secret split 50 times: share 1 is never the same twice (fresh polynomials), and
    # no share payload contains the secret.
    splits = [split_secret(SecretBytes(secret), 2, 3) for _ in range(50)]
    first_shares = [split[0].payload for split in splits]

    assert len(set(first_shares)) == 50
    assert len({split[0].set_id for split in splits}) == 50
    assert not any(secret[:8] in s.payload for split in splits for s in split)


def test_a_single_share_of_a_2_of_3_split_is_consistent_with_any_secret() -> None:
    # Information-theoretic secrecy: whatever one share holds, for every candidate secret c
    # there is a line through (0, c) and that share, i.e. a second share that would "recover" c.
    # So one share alone rules out no candidate. (The key-check value is what tells the real
    # secret apart once k genuine shares are combined.)
    real, other = os.urandom(16), os.urandom(16)
    share = split_secret(SecretBytes(real), 2, 3)[0]
    assert share.index == 1
    x1, x2 = _Element(1), _Element(2)

    for candidate in (real, other):
        blocks = padded(candidate)
        second = b""
        for i in range(0, len(blocks), BLOCK):
            c, y1 = _Element(blocks[i : i + BLOCK]), _Element(share.payload[i : i + BLOCK])
            slope = (y1 + c) * x1.inverse()  # characteristic 2: subtraction is addition
            second += (c + slope * x2).encode()
        completion = dataclasses.replace(share, index=2, payload=second)

        assert combine_raw([share, completion]) == blocks


# -- mistakes and forgeries ----------------------------------------------------------------------


def test_shares_of_different_splits_are_not_mixed(secret: bytes, shares: list[Share]) -> None:
    # Even two splits of the *same* secret: their polynomials differ, so mixing gives garbage.
    other = split_secret(SecretBytes(secret), 3, 5)

    with pytest.raises(ShareError, match="different splits"):
        recover_secret([shares[0], shares[1], other[2]])


def test_a_share_with_a_typo_is_caught_and_named(shares: list[Share]) -> None:
    text = shares[1].to_text()
    body_start = text.rindex("-", 0, text.rindex("-")) + 1
    typo = text[:body_start] + ("B" if text[body_start] != "B" else "C") + text[body_start + 1 :]

    with pytest.raises(ShareError, match="typo") as caught:
        recover_secret([shares[0].to_text(), typo, shares[2].to_text()])

    assert str(caught.value).startswith(f"share 2 of set {shares[1].set_id} ")
    assert "checksum" in str(caught.value)


def test_a_typo_in_the_checksum_itself_is_caught(shares: list[Share]) -> None:
    text = shares[0].to_text()
    typo = text[:-1] + ("0" if text[-1] != "0" else "1")

    with pytest.raises(ShareError, match="typo"):
        Share.from_text(typo)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "cvshare2-abcd1234-3of5-1-000000000000-AAAA-000000",
        "cvshare1-abcd1234-3of5-1-000000000000-AAAA",
    ],
)
def test_text_that_is_not_a_share_is_refused(text: str) -> None:
    with pytest.raises(ShareError, match="not a CareVault share"):
        Share.from_text(text)


def test_a_forged_share_with_a_valid_checksum_is_refused(shares: list[Share]) -> None:
    payload = bytearray(shares[2].payload)
    payload[0] ^= 0x01
    forged = retext(shares[2], payload=bytes(payload))

    with pytest.raises(ShareError, match="do not recover the secret"):
        recover_secret([shares[0].to_text(), shares[1].to_text(), forged])


def test_a_forged_share_of_the_wrong_length_is_refused(shares: list[Share]) -> None:
    forged = retext(shares[2], payload=shares[2].payload[:-BLOCK])

    with pytest.raises(ShareError, match="share 3 is damaged"):
        recover_secret([shares[0], shares[1], forged])


def test_forged_shares_with_empty_payloads_are_refused(shares: list[Share]) -> None:
    forged = [retext(s, payload=b"") for s in shares[:3]]

    with pytest.raises(ShareError, match="damaged"):
        recover_secret(forged)


def test_a_forged_share_claiming_a_lower_threshold_is_refused(shares: list[Share]) -> None:
    forged = [retext(s, threshold=2) for s in shares[:2]]

    with pytest.raises(ShareError):
        recover_secret(forged)


def test_duplicate_shares_do_not_count_twice(shares: list[Share]) -> None:
    with pytest.raises(ShareError, match="2 distinct"):
        recover_secret([shares[0], shares[0], shares[1]])
    with pytest.raises(ShareError, match="2 distinct"):
        recover_secret([shares[0].to_text(), shares[0], shares[1], shares[1].to_text()])


def test_duplicates_alongside_k_distinct_shares_are_harmless(
    secret: bytes, shares: list[Share]
) -> None:
    assert recover_secret([shares[0], shares[0], shares[3], shares[4]]) == SecretBytes(secret)


def test_share_text_survives_whitespace_and_line_breaks(secret: bytes, shares: list[Share]) -> None:
    # People copy shares from paper, in groups of characters, over several lines.
    def as_on_paper(text: str) -> str:
        groups = [text[i : i + 5] for i in range(0, len(text), 5)]
        lines = [" ".join(groups[i : i + 6]) for i in range(0, len(groups), 6)]
        return "  " + "\n\t".join(lines) + " \r\n"

    copied = [as_on_paper(s.to_text()) for s in shares[2:]]

    assert Share.from_text(copied[0]) == shares[2]
    assert recover_secret(copied) == SecretBytes(secret)


# -- parameters and hygiene ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n"), [(1, 3), (0, 3), (4, 3), (2, 256), (256, 256), (-1, 5), (2, 1)]
)
def test_invalid_k_of_n_is_refused(k: int, n: int) -> None:
    with pytest.raises(ShareError, match="need 2 <= k <= n <= 255"):
        split_secret(SecretBytes(b"k" * 32), k, n)


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ShareError, match="empty"):
        split_secret(SecretBytes(b""), 2, 3)


def test_a_share_repr_shows_no_payload(shares: list[Share]) -> None:
    text = repr(shares[0])
    body = shares[0].to_text().split("-")[5]

    assert text == f"<Share 1 of 3-of-5 set {shares[0].set_id}>"
    assert body[:8] not in text
    assert shares[0].payload.hex()[:8] not in text


def test_the_recovered_secret_is_wrapped(secret: bytes, shares: list[Share]) -> None:
    recovered = recover_secret(shares[:3])

    assert isinstance(recovered, SecretBytes)
    assert recovered.expose() == secret
    assert secret.hex() not in repr(recovered)
