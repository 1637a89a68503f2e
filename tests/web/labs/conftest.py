"""Lab fixtures: a fresh pending request for patient1 (doctor1's patient) and a unique marker
to put inside uploaded files."""

from __future__ import annotations

import secrets

import pytest

from carevault.web.labs import actions as labs


@pytest.fixture(autouse=True)
def _private_dirs(settings, tmp_path):
    """Each test gets its own upload directory, so "nothing was stored" is an exact comparison
    of its listing, whatever other test sessions write at the same time.

    STATIC_ROOT too: WhiteNoise warns (an error under ``filterwarnings = error``) when it does
    not exist, and a test run has no business creating one in the data directory."""
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STATIC_ROOT.mkdir()


@pytest.fixture
def marker() -> bytes:
    # Unique per test: files written by earlier tests stay on disk (only the database rolls back).
    return b"PLAINTEXT-" + secrets.token_hex(8).encode()


@pytest.fixture
def lab_request(users, patients):
    return labs.do_request_lab_test(
        users["doctor1"], patients["patient1"], test="Serum ferritin", notes="Morning sample"
    )
