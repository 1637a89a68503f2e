"""Lab fixtures: a fresh pending request for patient1 (doctor1's patient) and a unique marker
to put inside uploaded files."""

from __future__ import annotations

import secrets

import pytest

from carevault.web.labs import actions as labs


@pytest.fixture(autouse=True)
def _private_upload_dir(settings, tmp_path):
    """Each test gets its own upload directory, so "nothing was stored" is an exact comparison
    of its listing, and files one test tampers with are never seen by another (the database
    rolls back after each test; the disk does not)."""
    settings.UPLOAD_DIR = tmp_path / "uploads"


@pytest.fixture
def marker() -> bytes:
    # Unique per test, so finding it anywhere can only mean this test's plaintext leaked.
    return b"PLAINTEXT-" + secrets.token_hex(8).encode()


@pytest.fixture
def lab_request(users, patients):
    return labs.do_request_lab_test(
        users["doctor1"], patients["patient1"], test="Serum ferritin", notes="Morning sample"
    )
