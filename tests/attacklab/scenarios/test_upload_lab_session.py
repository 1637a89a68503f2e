"""How the upload scenarios read the server's answers and look for files written by name."""

from __future__ import annotations

from pathlib import Path

from carevault.attacklab.scenarios._lab_session import classify, names_outside
from carevault.client import Response


def answer(status: int, location: str = "") -> Response:
    return Response(status, {"Location": location} if location else {}, b"")


def test_a_redirect_back_to_the_queue_means_the_files_were_accepted() -> None:
    assert classify(answer(302, "/labs/")) == "accepted"


def test_a_redirect_to_the_login_or_second_factor_page_means_the_session_was_answered() -> None:
    assert classify(answer(302, "/accounts/login/")) == "cut"
    assert classify(answer(302, "/accounts/security/verify/?next=/labs/")) == "cut"
    assert classify(answer(403)) == "cut"


def test_client_errors_are_refusals_and_server_errors_are_errors() -> None:
    assert classify(answer(400)) == "refused"
    assert classify(answer(413)) == "refused"
    assert classify(answer(500)) == "error"


def test_a_file_named_by_the_sender_is_found_anywhere_under_the_data_directory(
    tmp_path: Path,
) -> None:
    data = tmp_path / "lab" / "data"
    (data / "uploads").mkdir(parents=True)
    (data / "uploads" / ("ab" * 16 + ".cvs")).write_bytes(b"x")
    assert names_outside(data, "cvlab1234") == []
    (data / "cvlab1234-a.html").write_bytes(b"x")
    (tmp_path / "lab" / "cvlab1234-b.png").write_bytes(b"x")
    found = names_outside(data, "cvlab1234")
    assert str(data / "cvlab1234-a.html") in found
    assert str(tmp_path / "lab" / "cvlab1234-b.png") in found
