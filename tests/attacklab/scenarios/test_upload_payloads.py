"""The hostile files and multipart bodies of the upload scenarios are what they claim to be."""

from __future__ import annotations

import email.parser
import io
import zipfile
import zlib

from carevault.attacklab.scenarios._payloads import (
    JPEG_MAGIC,
    PDF_MAGIC,
    PNG_MAGIC,
    SCRIPT,
    Part,
    attachment_ok,
    executable_stub,
    gunzip_size,
    gzip_bomb,
    links,
    minimal_pdf,
    multipart,
    pdf_flate_bomb,
    pdf_html_polyglot,
    png_with_script,
    size_limit,
    zip_bomb,
)


def test_the_pdf_html_polyglot_starts_as_a_pdf_and_carries_a_script() -> None:
    data = pdf_html_polyglot()
    assert data.startswith(PDF_MAGIC)
    assert b"<html>" in data
    assert SCRIPT in data


def test_the_png_with_a_script_is_a_png_with_valid_chunk_checksums() -> None:
    data = png_with_script()
    assert data.startswith(PNG_MAGIC)
    at = len(PNG_MAGIC)
    kinds = []
    while True:
        length = int.from_bytes(data[at : at + 4], "big")
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        crc = int.from_bytes(data[at + 8 + length : at + 12 + length], "big")
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        kinds.append(kind)
        at += 12 + length
        if kind == b"IEND":
            break
    assert kinds == [b"IHDR", b"tEXt", b"IDAT", b"IEND"]
    assert SCRIPT in data


def test_the_executable_stub_is_no_allowed_type() -> None:
    data = executable_stub()
    assert data.startswith(b"MZ")
    assert not data.startswith((PDF_MAGIC, PNG_MAGIC, JPEG_MAGIC))


def test_the_zip_bomb_is_small_and_inflates_to_what_was_asked() -> None:
    data = zip_bomb(8 << 20)
    assert len(data) < 64 * 1024
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.infolist()[0].file_size == 8 << 20


def test_the_gzip_bomb_is_small_and_inflates_to_what_was_asked() -> None:
    data = gzip_bomb(8 << 20)
    assert len(data) < 64 * 1024
    assert gunzip_size(data, 64 << 20) == 8 << 20


def test_counting_a_gzip_bomb_stops_at_the_limit() -> None:
    assert gunzip_size(gzip_bomb(8 << 20), 2 << 20) <= 3 << 20


def test_the_pdf_flate_bomb_is_a_small_pdf_with_a_huge_stream() -> None:
    data = pdf_flate_bomb(4 << 20)
    assert data.startswith(PDF_MAGIC)
    assert len(data) < 64 * 1024
    start = data.index(b"stream\n") + len(b"stream\n")
    end = data.index(b"\nendstream")
    assert len(zlib.decompress(data[start:end])) == 4 << 20


def test_a_multipart_body_parses_back_into_its_fields_and_files() -> None:
    files = [Part("files", "../../x.pdf", "application/pdf", minimal_pdf())]
    body, content_type = multipart({"values": "Na 140"}, files, "BOUNDARY42")
    assert content_type == "multipart/form-data; boundary=BOUNDARY42"
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    parts = message.get_payload()
    assert isinstance(parts, list)
    assert len(parts) == 2
    assert parts[0].get_payload() == "Na 140"
    assert parts[1].get_filename() == "../../x.pdf"
    assert parts[1].get_payload(decode=True) == minimal_pdf()


def test_a_multipart_file_name_keeps_nul_and_bidi_bytes_but_escapes_quotes() -> None:
    body, _ = multipart({}, [Part("f", 'a"b\x00c\u202e.pdf', "application/pdf", b"x")], "B")
    assert b'filename="a%22b\x00c\xe2\x80\xae.pdf"' in body


def test_links_lists_the_distinct_ids_of_a_prefix_in_page_order() -> None:
    a, b = "0" * 8 + "-0000-0000-0000-" + "0" * 12, "1" * 8 + "-1111-1111-1111-" + "1" * 12
    page = (
        f'<a href="/labs/files/{b}/">x</a><a href="/labs/files/{a}/"></a>'
        f'<a href="/labs/files/{b}/">'
    )
    assert links(page.encode(), "/labs/files/") == [b, a]
    assert links(page, "/labs/requests/") == []


def test_size_limit_reads_the_per_file_limit_the_form_states() -> None:
    page = "Up to 5 PDF, PNG or JPEG files (checked by their content), 10.0\xa0MB each and 50.0 MB"
    assert size_limit(page) == 10 * 1024 * 1024
    assert size_limit("512 bytes each") == 512
    assert size_limit("no limit stated") is None


def test_a_nosniff_attachment_with_a_plain_name_is_safe() -> None:
    headers = {
        "Content-Disposition": 'attachment; filename="report.html.pdf"',
        "X-Content-Type-Options": "nosniff",
    }
    assert attachment_ok(headers) == []


def test_an_inline_sniffable_download_with_a_directory_in_its_name_is_unsafe() -> None:
    problems = attachment_ok({"Content-Disposition": 'inline; filename="../../x.html"'})
    assert "not served as an attachment" in problems
    assert "no X-Content-Type-Options: nosniff" in problems
    assert "the download name carries a directory or NUL" in problems
    assert "the download name keeps a dangerous extension" in problems
