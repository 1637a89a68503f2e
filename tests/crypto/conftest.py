"""Fixtures shared by the crypto tests."""

from __future__ import annotations

import pytest

from carevault.crypto import Keyring, Suite


@pytest.fixture(scope="session")
def keyrings_by_suite() -> dict[Suite, Keyring]:
    """One single-version keyring per suite, generated once (an RSA-3072 key costs ~0.3 s).

    Shared by many tests: encrypt and decrypt with them, copy them (``public()``,
    ``to_json()``), but never rotate, disable or destroy them.
    """
    return {suite: Keyring.generate(f"test-{suite.label.lower()}", suite) for suite in Suite}
