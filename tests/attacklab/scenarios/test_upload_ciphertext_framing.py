"""The homomorphic request framing the malformed-ciphertext scenario breaks: split and joined
back, and each mutation differs from the valid request where it says."""

from __future__ import annotations

import random

from carevault.attacklab.scenarios.upload_ciphertext import (
    HEADER,
    LENGTH,
    he_mutations,
    join_request,
    packet_mutations,
    split_request,
)
from carevault.crypto.packets import b64url

VALID = join_request((b"CVHE", 1, 1, 1), b"context-bytes", [b"ciphertext-one"])


def test_a_request_splits_into_its_header_context_and_ciphertexts_and_joins_back() -> None:
    header, context, blobs = split_request(VALID)
    assert header == (b"CVHE", 1, 1, 1)
    assert context == b"context-bytes"
    assert blobs == [b"ciphertext-one"]
    assert join_request(header, context, blobs) == VALID


def test_the_mutations_break_the_header_fields_they_name() -> None:
    cases = he_mutations(VALID, random.Random(1))
    assert cases["another magic"][1][:4] == b"EVIL"
    assert HEADER.unpack_from(cases["unknown version"][1])[1] == 9
    assert HEADER.unpack_from(cases["zero patients"][1])[3] == 0
    assert LENGTH.unpack_from(cases["context length 4 GiB"][1], HEADER.size)[0] == 2**32 - 1
    assert cases["JSON content type"] == ("application/json", VALID)
    assert len(cases["just over 12 MiB"][1]) == (12 << 20) + 1
    assert all(body != VALID for what, (_t, body) in cases.items() if what != "JSON content type")


def test_the_packet_mutations_give_keys_and_ivs_of_the_wrong_size() -> None:
    packet = {"cid": b64url(b"c" * 16), "epk": b64url(b"\x04" + b"k" * 64), "iv": "", "ct": ""}
    cases = packet_mutations(packet, random.Random(2))
    import base64
    import json

    def size(what: str, field: str) -> int:
        value = json.loads(cases[what]())[field]
        return len(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))

    assert size("33-byte (compressed) key", "epk") == 33
    assert size("97-byte (P-384 sized) key", "epk") == 97
    assert size("8-byte IV", "iv") == 8
    assert len(cases["packet over 8 kB"]()) > 8192
    assert "alg" in json.loads(cases["extra field"]())
