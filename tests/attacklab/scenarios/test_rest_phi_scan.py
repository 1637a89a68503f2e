import base64
import bz2
import gzip
import io
import lzma
import random
import zipfile
import zlib

import pytest

from carevault.attacklab.scenarios.rest_phi_scan import scan_bytes, scan_tree

SECRET = "CANARY-1f2e3d4c5b6a7988-Quigley"
VALUES = {"canary": SECRET}


def _random(n: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


def test_it_finds_planted_plaintext_in_raw_bytes() -> None:
    blob = _random(5000) + SECRET.encode() + _random(100, 8)
    assert [h.encoding for h in scan_bytes(blob, VALUES, "f")] == ["raw"]


def test_it_finds_case_folded_and_utf16_plaintext() -> None:
    assert scan_bytes(b"xx" + SECRET.upper().encode(), VALUES, "f")[0].encoding == "case-folded"
    found = scan_bytes(b"\x01" + SECRET.encode("utf-16-le"), VALUES, "f")
    assert found[0].encoding == "utf-16-le"


@pytest.mark.parametrize("prefix", [b"", b"a", b"ab", b"abc", b"abcd"])
@pytest.mark.parametrize("suffix", [b"", b"z", b"zy"])
def test_it_finds_base64_at_every_alignment(prefix: bytes, suffix: bytes) -> None:
    blob = b"{" + base64.b64encode(prefix + SECRET.encode() + suffix) + b"}"
    assert any(h.encoding.startswith("base64") for h in scan_bytes(blob, VALUES, "f"))


def test_it_finds_base64url_and_hex() -> None:
    url = base64.urlsafe_b64encode(b"\xfb\xff" + SECRET.encode() + b"\xfe\xff")
    assert scan_bytes(url, VALUES, "f")
    assert scan_bytes(SECRET.encode().hex().encode(), VALUES, "f")[0].encoding == "hex"


@pytest.mark.parametrize(
    "pack",
    [
        gzip.compress,
        zlib.compress,
        bz2.compress,
        lzma.compress,
        lambda data: gzip.compress(base64.b64encode(data)),
    ],
)
def test_it_finds_plaintext_inside_compressed_blobs_anywhere_in_a_file(pack) -> None:
    # Compressible text around it: the plaintext is not stored verbatim in the stream.
    inner = b"ward round; " * 200 + b"note: " + SECRET.encode() + b" stable. " * 200
    blob = _random(4096) + pack(inner) + _random(512, 10)
    hits = scan_bytes(blob, VALUES, "file")
    assert hits
    assert all("@" in h.where for h in hits)


def test_it_finds_plaintext_in_a_zip_member() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export.txt", "patient " + SECRET * 3)
    assert scan_bytes(_random(777) + buffer.getvalue(), VALUES, "f")


def test_it_finds_nothing_in_random_bytes() -> None:
    assert scan_bytes(_random(1 << 20), {"canary": SECRET, "name": "Bartholomew"}, "f") == []


def test_it_finds_nothing_in_compressed_random_bytes() -> None:
    assert scan_bytes(gzip.compress(_random(100_000)), VALUES, "f") == []


def test_it_scans_a_directory_and_sqlite_cells(tmp_path) -> None:
    import sqlite3

    (tmp_path / "clean.bin").write_bytes(_random(2000))
    connection = sqlite3.connect(tmp_path / "carevault.sqlite3")
    connection.execute("create table t (v text)")
    connection.execute("insert into t values (?)", ("x" * 9000 + SECRET,))  # overflow pages
    connection.commit()
    connection.close()
    hits, files, _ = scan_tree(tmp_path, VALUES)
    assert files == 2
    assert {h.label for h in hits} == {"canary"}
