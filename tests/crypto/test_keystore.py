"""The directory key store: wrapped keyrings as files, compare-and-swap updates."""

from __future__ import annotations

import pytest

from carevault.crypto import ConfigurationError
from carevault.crypto.keystore import DirectoryKeyStore


def test_it_stores_names_that_are_not_file_names(tmp_path):
    store = DirectoryKeyStore(tmp_path)
    store.put("patient:42/a b", b"blob")
    assert store.names() == ["patient:42/a b"]
    assert store.get("patient:42/a b") == b"blob"
    assert "patient:42/a b" in store


def test_compare_and_swap_replaces_only_the_expected_value(tmp_path):
    store = DirectoryKeyStore(tmp_path)
    store.put("k", b"one")
    assert store.compare_and_swap("k", b"two", b"three") is False
    assert store.get("k") == b"one"
    assert store.compare_and_swap("k", b"one", b"three") is True
    assert store.get("k") == b"three"


def test_compare_and_swap_does_not_create_missing_entries(tmp_path):
    store = DirectoryKeyStore(tmp_path)
    assert store.compare_and_swap("k", b"", b"x") is False
    assert store.names() == []


def test_a_missing_entry_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigurationError, match="no wrapped keyring called 'nope'"):
        DirectoryKeyStore(tmp_path).get("nope")


def test_an_empty_store_has_no_names_and_creates_no_directory(tmp_path):
    store = DirectoryKeyStore(tmp_path / "absent")
    assert store.names() == []
    assert not (tmp_path / "absent").exists()
