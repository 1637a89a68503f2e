"""A running process sees `carevault keys rotate` without a restart (issue 13): the master key
is looked up again when its file changes, and a key that does not unwrap under the loaded master
is retried once after looking it up again, so a stale cache is never reported as tampering."""

from __future__ import annotations

import shutil

import pytest

from carevault import config, keyrotation
from carevault.crypto import FileMasterKeyProvider, MasterKey
from carevault.crypto.envelope import key_id_of
from carevault.web.audit.models import AuditEntry
from carevault.web.clinic.models import Patient
from carevault.web.vault import service
from carevault.web.vault.keystore import DatabaseKeyStore
from carevault.web.vault.models import PatientKey


@pytest.fixture
def own_master(tmp_path, monkeypatch, patients):
    """A copy of the master key file this test may rotate (others keep theirs)."""
    original = config.master_key_provider()
    assert isinstance(original, FileMasterKeyProvider)
    copy = tmp_path / "master.json"
    shutil.copy2(original.path, copy)
    monkeypatch.setenv("CAREVAULT_MASTER_KEY_FILE", str(copy))
    service.reset_caches()
    yield FileMasterKeyProvider(copy)
    service.reset_caches()


def rotate_elsewhere(provider: FileMasterKeyProvider) -> None:
    done = keyrotation.rotate(provider, [("database", DatabaseKeyStore())])
    assert done.report.complete


def every_name_reads() -> bool:
    return all(p.unseal_or_none("name") is not None for p in Patient.objects.all())


def no_alerts() -> bool:
    return not AuditEntry.objects.filter(action="phi.decryption_failed").exists()


def test_a_rotation_by_another_process_is_seen_without_a_restart(own_master):
    assert every_name_reads()
    assert isinstance(service.master(), MasterKey)
    rotate_elsewhere(own_master)
    assert {key_id_of(bytes(w)) for w in PatientKey.objects.values_list("wrapped", flat=True)} == {
        2
    }
    assert every_name_reads()
    assert no_alerts()
    # New keys are wrapped under the new version, not the one this process started with.
    master = service.master()
    assert isinstance(master, MasterKey)
    assert master.keyring.primary.version == 2


def test_a_key_under_a_version_the_process_has_not_seen_is_retried_not_reported(own_master):
    stale = service.master()
    rotate_elsewhere(own_master)
    service.reset_caches()
    service.master()
    # The process holds the old master while believing it current (e.g. a copied file).
    service._master = stale
    assert every_name_reads()
    assert no_alerts()
