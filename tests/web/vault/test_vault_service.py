"""The vault service: wrapped patient keyrings, rotation, crypto-shredding, the shared
encryption counter, service secrets, blind indexes and clinicians' signing keys."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import pytest
from django.db import transaction

from carevault.crypto import DecryptionError, KeyState
from carevault.crypto.envelope import key_id_of
from carevault.web.clinic import actions as clinic
from carevault.web.clinic.models import Diagnosis, Patient
from carevault.web.vault import service
from carevault.web.vault.models import ClinicianKey, PatientKey, ServiceSecret


@pytest.fixture(autouse=True)
def _fresh_caches():
    # Every test starts and ends with nothing unwrapped, so no test sees another's cache.
    service.reset_caches()
    yield
    service.reset_caches()


def _wrapped(patient_id: object) -> bytes:
    return bytes(PatientKey.objects.get(patient_id=patient_id).wrapped)


def _reload(obj):
    return type(obj).objects.get(pk=obj.pk)


class _Abort(Exception):
    pass


def _rolled_back(action, *args) -> None:
    """Run ``action`` in a transaction that then fails, as when the surrounding work fails."""
    try:
        with transaction.atomic():
            action(*args)
            raise _Abort
    except _Abort:
        pass


# -- patients' keyrings ---------------------------------------------------------------------------


def test_a_new_patient_keyring_is_stored_wrapped_never_as_key_json(db):
    patient_id = uuid.uuid4()
    ring = service.create_patient_keyring(patient_id)
    blob = _wrapped(patient_id)
    doc = json.loads(ring.to_json())
    secrets = [v["material"]["k"] for v in doc["versions"]]
    assert secrets
    for needle in (
        ring.to_json(),
        b'"material"',
        b'"versions"',
        *(s.encode() for s in secrets),
        *(base64.b64decode(s + "=" * (-len(s) % 4), altchars=b"-_") for s in secrets),
    ):
        assert needle not in blob


def test_a_wrapped_keyring_opens_only_as_its_own_patients(db):
    first, second = uuid.uuid4(), uuid.uuid4()
    service.create_patient_keyring(first)
    service.create_patient_keyring(second)
    PatientKey.objects.filter(patient_id=second).update(wrapped=_wrapped(first))
    with pytest.raises(DecryptionError):
        service.patient_keyring(second)


def test_the_keyring_unwraps_the_same_after_the_caches_are_reset(patients):
    patient = patients["patient1"]
    sealed = service.seal(patient.pk, "t", "c", "r", "hello")
    service.reset_caches()
    assert service.open_text(patient.pk, "t", "c", "r", sealed) == "hello"


def test_rotation_keeps_old_data_readable_and_seals_new_data_under_the_new_version(patients):
    patient = patients["patient1"]
    old_version = key_id_of(bytes(patient.name_enc))
    new_version = service.rotate_patient_key(patient.pk)
    assert new_version == old_version + 1
    service.reset_caches()  # the new blob must be what the database holds, not a cached object
    assert _reload(patient).unseal("name") == "Alice Wonderland-Smith"
    diagnosis = clinic.do_add_diagnosis(
        patient.care_team.get().doctor, patient, code="Z00.0", description="General exam"
    )
    # Sealed by a version made at or after the rotation: the primary, or the active version
    # the rotation's keyring added for the suite the policy picked.
    written_by = key_id_of(bytes(_reload(diagnosis).description_enc))
    assert written_by >= new_version
    states = {v.version: v.state for v in service.patient_keyring(patient.pk).versions()}
    assert states[written_by] in (KeyState.PRIMARY, KeyState.ACTIVE)
    assert _reload(diagnosis).unseal("description") == "General exam"


def test_rotation_resets_the_shared_encryption_counter(patients):
    patient = patients["patient1"]
    service.count_encryptions(patient.pk, 10)
    service.rotate_patient_key(patient.pk)
    assert PatientKey.objects.get(patient_id=patient.pk).encryptions == 0


def test_a_rotation_that_rolls_back_leaves_no_phantom_version_in_this_process(patients):
    patient = patients["patient1"]
    version = service.patient_keyring(patient.pk).primary.version
    _rolled_back(service.rotate_patient_key, patient.pk)
    # What this process encrypts with must be a version the database holds.
    assert service.patient_keyring(patient.pk).primary.version == version
    sealed = service.seal(patient.pk, "t", "c", "r", "after the rollback")
    service.reset_caches()
    assert service.open_text(patient.pk, "t", "c", "r", sealed) == "after the rollback"


def test_shredding_makes_every_field_of_the_patient_unreadable(patients):
    patient = patients["patient2"]
    service.shred_patient(patient.pk)
    patient = _reload(patient)
    assert patient.unseal_all() == dict.fromkeys(Patient.PHI_FIELDS)
    for diagnosis in Diagnosis.objects.filter(patient=patient):
        assert diagnosis.unseal_or_none("description") is None
    for prescription in patient.prescriptions.all():
        assert set(prescription.unseal_all().values()) == {None}
    service.reset_caches()
    assert _reload(patient).unseal_or_none("name") is None


def test_shredding_one_patient_leaves_the_others_readable(patients):
    service.shred_patient(patients["patient2"].pk)
    assert _reload(patients["patient1"]).unseal("name") == "Alice Wonderland-Smith"
    assert _reload(patients["patient3"]).unseal("name") == "Chiamaka Okonkwo-Berg"


def test_a_shred_that_rolls_back_erases_nothing(patients):
    patient = patients["patient1"]
    _rolled_back(service.shred_patient, patient.pk)
    assert _reload(patient).unseal("name") == "Alice Wonderland-Smith"


def test_the_encryption_counter_adds_up_across_calls(patients):
    patient = patients["patient3"]
    before = PatientKey.objects.get(patient_id=patient.pk).encryptions
    service.count_encryptions(patient.pk, 3)
    service.count_encryptions(patient.pk, 4)
    assert PatientKey.objects.get(patient_id=patient.pk).encryptions == before + 7


def test_the_seed_counted_its_encryptions(patients):
    # 6 demographics + 2 diagnosis + 1 note + 3 prescription + 2 lab request + 2 result + 1 visit
    assert PatientKey.objects.get(patient_id=patients["patient3"].pk).encryptions >= 17


def test_reaching_half_the_nonce_budget_rotates_the_data_key(patients, monkeypatch):
    patient = patients["patient3"]
    monkeypatch.setattr(service, "GCM_NONCE_BUDGET", 2000)
    primary = service.patient_keyring(patient.pk).primary.version
    newest = max(v.version for v in service.patient_keyring(patient.pk).versions())
    PatientKey.objects.filter(patient_id=patient.pk).update(encryptions=0)
    service.count_encryptions(patient.pk, 999)
    assert service.patient_keyring(patient.pk).primary.version == primary
    service.count_encryptions(patient.pk, 1)
    assert service.patient_keyring(patient.pk).primary.version == newest + 1
    assert PatientKey.objects.get(patient_id=patient.pk).encryptions == 0
    assert _reload(patient).unseal("name") == "Chiamaka Okonkwo-Berg"


# -- field sealing --------------------------------------------------------------------------------


def test_a_sealed_field_is_bound_to_its_table_column_row_and_patient(patients):
    patient = patients["patient1"]
    other = patients["patient2"]
    sealed = service.seal(patient.pk, "clinic_note", "body", "row-1", "secret words")
    assert b"secret words" not in sealed
    assert service.open_text(patient.pk, "clinic_note", "body", "row-1", sealed) == "secret words"
    for table, column, row in [
        ("clinic_other", "body", "row-1"),
        ("clinic_note", "title", "row-1"),
        ("clinic_note", "body", "row-2"),
    ]:
        with pytest.raises(DecryptionError):
            service.open_text(patient.pk, table, column, row, sealed)
    with pytest.raises(DecryptionError):
        service.open_text(other.pk, "clinic_note", "body", "row-1", sealed)


# -- service secrets and blind indexes -------------------------------------------------------------


def test_a_service_secret_is_stable_across_cache_resets(db):
    first = service.service_secret("test-secret").expose()
    service.reset_caches()
    assert service.service_secret("test-secret").expose() == first
    assert len(first) == 32


def test_service_secrets_differ_by_name(db):
    assert service.service_secret("one").expose() != service.service_secret("two").expose()


def test_a_service_secret_is_stored_wrapped(db):
    secret = service.service_secret("stored-wrapped").expose()
    blob = bytes(ServiceSecret.objects.get(name="stored-wrapped").wrapped)
    assert secret not in blob


def test_a_service_secret_row_copied_under_another_name_does_not_open(db):
    service.service_secret("source")
    blob = bytes(ServiceSecret.objects.get(name="source").wrapped)
    ServiceSecret.objects.create(name="copied", wrapped=blob)
    service.reset_caches()
    with pytest.raises(DecryptionError):
        service.service_secret("copied")


def test_a_blind_index_is_stable_across_cache_resets(db):
    first = service.blind_index("patient.mrn", "MRN-12345678")
    service.reset_caches()
    assert service.blind_index("patient.mrn", "MRN-12345678") == first
    assert len(first) == 8  # 32 bits, hex


def test_a_blind_index_normalises_case_and_spacing(db):
    assert service.blind_index("patient.email", " Alice@Example.org ") == service.blind_index(
        "patient.email", "alice@example.org"
    )


def test_blind_indexes_are_separated_by_field(db):
    value = "same value in two fields"
    assert service.blind_index("patient.mrn", value) != service.blind_index("patient.email", value)


def test_a_blind_index_is_not_a_plain_hash_of_the_value(db):
    value = "MRN-10000001"
    index = service.blind_index("patient.mrn", value)
    assert index not in hashlib.sha256(value.lower().encode()).hexdigest()
    assert index not in hashlib.sha256(value.encode()).hexdigest()


def test_the_seeded_patients_are_found_by_their_mrn(users, patients):
    found = clinic.find_patients_by_mrn(users["doctor1"], "MRN-10000002")
    assert [p.pk for p in found] == [patients["patient2"].pk]
    assert clinic.find_patients_by_mrn(users["doctor1"], "MRN-99999999") == []


# -- signing keys ----------------------------------------------------------------------------------


def test_a_signing_key_is_created_once_and_then_reused(users):
    user = users["doctor2"]
    count = ClinicianKey.objects.filter(user=user).count()
    record, key = service.signing_key_for(user)
    again, key_again = service.signing_key_for(user)
    assert record.pk == again.pk
    assert key.key_id == key_again.key_id == record.key_id
    assert ClinicianKey.objects.filter(user=user).count() == max(count, 1)


def test_a_user_without_a_key_gets_a_new_one(users):
    user = users["admin"]
    assert not ClinicianKey.objects.filter(user=user).exists()
    record, key = service.signing_key_for(user)
    assert ClinicianKey.objects.filter(user=user).count() == 1
    assert record.key_id == key.key_id


def test_the_private_signing_key_is_stored_wrapped(users):
    record, key = service.signing_key_for(users["admin"])
    private = key.private_bytes().expose()
    assert private not in bytes(record.wrapped_private)
    assert bytes(record.public_key) == key.verify_key.public_bytes()


def test_the_signing_key_unwraps_after_the_caches_are_reset_and_still_verifies(users):
    record, _ = service.signing_key_for(users["admin"])
    service.reset_caches()
    again, key = service.signing_key_for(users["admin"])
    assert again.pk == record.pk
    signature = key.sign({"a": 1}, purpose="prescription")
    service.verify_key(_reload(record)).verify({"a": 1}, signature, purpose="prescription")


def test_a_wrapped_private_key_moved_to_another_user_does_not_unwrap(users):
    record, _ = service.signing_key_for(users["doctor1"])
    mine, _ = service.signing_key_for(users["admin"])
    ClinicianKey.objects.filter(pk=mine.pk).update(wrapped_private=bytes(record.wrapped_private))
    with pytest.raises(DecryptionError):
        service.signing_key_for(users["admin"])
