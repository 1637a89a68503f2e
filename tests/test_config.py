"""Configuration from the environment: data directory, modes, master-key provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from carevault import config
from carevault.crypto import EnvMasterKeyProvider, FileMasterKeyProvider, KeyProviderError


def test_the_data_directory_defaults_to_var_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.data_dir({}) == tmp_path / "var"


def test_the_data_directory_follows_carevault_data_dir():
    assert config.data_dir({"CAREVAULT_DATA_DIR": "/srv/cv"}) == Path("/srv/cv")


def test_dev_mode_keeps_the_master_key_in_the_data_directory():
    provider = config.master_key_provider({"CAREVAULT_DATA_DIR": "/srv/cv"})
    assert isinstance(provider, FileMasterKeyProvider)
    assert provider.path == Path("/srv/cv/keys/master.json")


def test_an_explicit_master_key_wins_over_the_file():
    env = {"CAREVAULT_MASTER_KEY": EnvMasterKeyProvider.new_value(), "CAREVAULT_DATA_DIR": "/x"}
    assert isinstance(config.master_key_provider(env), EnvMasterKeyProvider)


def test_production_mode_without_a_master_key_stops_with_a_clear_message():
    with pytest.raises(KeyProviderError, match="production mode needs a master key"):
        config.master_key_provider({"CAREVAULT_ENV": "production"})


def test_an_unknown_mode_is_an_error_not_a_silent_default():
    with pytest.raises(ValueError, match="CAREVAULT_ENV"):
        config.is_production({"CAREVAULT_ENV": "prod"})
