"""Signed records: prescriptions and lab results verify after the seed, and every way an insider
with the database (and even the data keys, but not the signer's private key) can change one
reads as "tampered", never as "valid" and never as a crash."""

from __future__ import annotations

import pytest

from carevault.crypto import SignatureAlgorithm, SigningKey
from carevault.web.clinic.actions import SignatureStatus, prescription_record, prescription_status
from carevault.web.clinic.models import Prescription
from carevault.web.labs.actions import result_record, result_status
from carevault.web.labs.models import LabFile, LabResult
from carevault.web.vault import service
from carevault.web.vault.context import SYSTEM_WRITE
from carevault.web.vault.models import ClinicianKey

VALID, TAMPERED = SignatureStatus.VALID, SignatureStatus.TAMPERED


def _prescription(username: str) -> Prescription:
    return Prescription.objects.select_related("doctor", "signing_key", "patient").get(
        patient__user__username=username
    )


def _status(username: str) -> str:
    p = _prescription(username)
    return prescription_status(p, p.unseal_all())


def _result(username: str) -> LabResult:
    return LabResult.objects.select_related("request", "technician", "signing_key", "patient").get(
        patient__user__username=username
    )


def _result_status(username: str) -> str:
    return result_status(_result(username))[1]


def _update(model, pk, **fields) -> None:
    # queryset.update: straight to the database, as an insider with SQL access would write.
    assert model.objects.filter(pk=pk).update(**fields) == 1


# -- after the seed --------------------------------------------------------------------------------


def test_every_seeded_prescription_verifies(db):
    for username in ("patient1", "patient2", "patient3"):
        assert _status(username) == VALID


def test_every_seeded_lab_result_verifies(db):
    for username in ("patient1", "patient2", "patient3"):
        values, status = result_status(_result(username))
        assert status == VALID
        assert values["values"]


def test_the_seeded_lab_file_is_covered_by_its_results_signature(db):
    result = _result("patient2")
    assert result.files.count() == 1


# -- prescriptions ---------------------------------------------------------------------------------


def test_ciphertexts_swapped_between_two_columns_read_as_tampered(db):
    p = _prescription("patient1")
    _update(Prescription, p.pk, drug_enc=bytes(p.dose_enc), dose_enc=bytes(p.drug_enc))
    assert _status("patient1") == TAMPERED


def test_a_ciphertext_copied_from_another_patients_prescription_reads_as_tampered(db):
    # Both by doctor1: same signer, same key; only the patient differs.
    source = _prescription("patient2")
    target = _prescription("patient1")
    _update(Prescription, target.pk, drug_enc=bytes(source.drug_enc))
    assert _status("patient1") == TAMPERED
    assert _status("patient2") == VALID


def test_a_signature_taken_from_another_prescription_reads_as_tampered(db):
    source = _prescription("patient2")  # same doctor, same key: only the record differs
    _update(Prescription, _prescription("patient1").pk, signature=source.signature)
    assert _status("patient1") == TAMPERED


def test_a_malformed_signature_reads_as_tampered(db):
    p = _prescription("patient1")
    for text in ("", "garbage", p.signature[:-4], p.signature.replace("cvsig1", "cvsig2")):
        _update(Prescription, p.pk, signature=text)
        assert _status("patient1") == TAMPERED


def test_a_signing_key_record_swapped_to_another_doctors_key_reads_as_tampered(db):
    other = _prescription("patient3")  # doctor2's
    _update(Prescription, _prescription("patient1").pk, signing_key=other.signing_key_id)
    assert _status("patient1") == TAMPERED


def test_another_doctors_key_and_signature_together_read_as_tampered(db):
    other = _prescription("patient3")
    _update(
        Prescription,
        _prescription("patient1").pk,
        signing_key=other.signing_key_id,
        signature=other.signature,
    )
    assert _status("patient1") == TAMPERED


def test_moving_a_prescription_to_another_doctor_reads_as_tampered(db):
    other = _prescription("patient3")
    _update(
        Prescription,
        _prescription("patient1").pk,
        doctor=other.doctor_id,
        signing_key=other.signing_key_id,
    )
    assert _status("patient1") == TAMPERED


def test_moving_a_prescription_to_another_patient_reads_as_tampered(db):
    moved, other = _prescription("patient1"), _prescription("patient2")
    _update(Prescription, moved.pk, patient=other.patient_id)
    for pk, expected in [(moved.pk, TAMPERED), (other.pk, VALID)]:
        p = Prescription.objects.get(pk=pk)
        assert prescription_status(p, p.unseal_all()) == expected


def test_a_changed_date_reads_as_tampered(db):
    p = _prescription("patient1")
    _update(Prescription, p.pk, created_at=p.created_at.replace(year=p.created_at.year - 1))
    assert _status("patient1") == TAMPERED


def test_a_field_re_encrypted_to_a_new_value_through_the_vault_reads_as_tampered(db):
    # An insider with the database and the data key, but not the doctor's signing key: the new
    # dose decrypts perfectly, and only the signature tells.
    p = _prescription("patient1")
    p.seal(SYSTEM_WRITE, dose="5000 mg four times daily")
    _update(Prescription, p.pk, dose_enc=p.dose_enc)
    again = _prescription("patient1")
    assert again.unseal("dose") == "5000 mg four times daily"
    assert prescription_status(again, again.unseal_all()) == TAMPERED


def test_a_forged_key_registered_for_the_doctor_does_not_make_a_forgery_valid(db):
    # The insider makes a key pair of their own, files its public half as one of doctor1's
    # keys (the database is all they need for that) and signs a changed prescription with it.
    p = _prescription("patient1")
    values = p.unseal_all()
    values["dose"] = "5000 mg four times daily"
    forger = SigningKey.generate(SignatureAlgorithm.ED25519)
    record = ClinicianKey.objects.create(
        user=p.doctor,
        algorithm=forger.algorithm.value,
        key_id=forger.key_id,
        public_key=forger.verify_key.public_bytes(),
        wrapped_private=b"not wrapped by the master key",
        active=False,
    )
    p.seal(SYSTEM_WRITE, dose=values["dose"])
    signature = forger.sign(prescription_record(p, values), purpose="prescription").to_text()
    _update(Prescription, p.pk, dose_enc=p.dose_enc, signature=signature, signing_key=record.pk)
    assert _status("patient1") == TAMPERED


def test_a_doctors_public_key_replaced_in_place_does_not_make_a_forgery_valid(db):
    p = _prescription("patient1")
    values = p.unseal_all()
    values["drug"] = "Oxycodone"
    forger = SigningKey.generate(SignatureAlgorithm.ED25519)
    _update(
        ClinicianKey,
        p.signing_key_id,
        public_key=forger.verify_key.public_bytes(),
        key_id=forger.key_id,
    )
    p.seal(SYSTEM_WRITE, drug=values["drug"])
    signature = forger.sign(prescription_record(p, values), purpose="prescription").to_text()
    _update(Prescription, p.pk, drug_enc=p.drug_enc, signature=signature)
    assert _status("patient1") == TAMPERED
    assert _status("patient2") == TAMPERED  # doctor1's genuine key no longer matches either


@pytest.mark.parametrize(
    "fields",
    [
        {"public_key": b"not a key"},
        {"algorithm": "ROT13"},
        {"algorithm": SignatureAlgorithm.ECDSA_P256_SHA256.value},
    ],
    ids=["garbage-public-key", "unknown-algorithm", "wrong-algorithm"],
)
def test_a_damaged_key_record_reads_as_tampered_not_as_a_crash(db, fields):
    _update(ClinicianKey, _prescription("patient1").signing_key_id, **fields)
    assert _status("patient1") == TAMPERED


# -- lab results -----------------------------------------------------------------------------------


def test_lab_values_swapped_with_the_comment_read_as_tampered(db):
    r = _result("patient1")
    _update(LabResult, r.pk, values_enc=bytes(r.comment_enc), comment_enc=bytes(r.values_enc))
    assert _result_status("patient1") == TAMPERED


def test_lab_values_copied_from_another_patients_result_read_as_tampered(db):
    _update(LabResult, _result("patient1").pk, values_enc=bytes(_result("patient3").values_enc))
    assert _result_status("patient1") == TAMPERED
    assert _result_status("patient3") == VALID


def test_a_lab_signature_taken_from_another_result_reads_as_tampered(db):
    _update(LabResult, _result("patient1").pk, signature=_result("patient3").signature)
    assert _result_status("patient1") == TAMPERED


def test_a_lab_result_moved_to_a_doctors_key_reads_as_tampered(db):
    _update(LabResult, _result("patient1").pk, signing_key=_prescription("patient1").signing_key_id)
    assert _result_status("patient1") == TAMPERED


def test_a_lab_value_re_encrypted_through_the_vault_reads_as_tampered(db):
    r = _result("patient1")
    r.seal(SYSTEM_WRITE, values="HbA1c 5.1 %")
    _update(LabResult, r.pk, values_enc=r.values_enc)
    values, status = result_status(_result("patient1"))
    assert values["values"] == "HbA1c 5.1 %"
    assert status == TAMPERED


def test_a_lab_files_digest_re_encrypted_through_the_vault_reads_as_tampered(db):
    lab_file = LabFile.objects.get(result=_result("patient2"))
    lab_file.seal(SYSTEM_WRITE, sha256="0" * 64)
    _update(LabFile, lab_file.pk, sha256_enc=lab_file.sha256_enc)
    assert _result_status("patient2") == TAMPERED


def test_a_lab_file_removed_from_a_result_reads_as_tampered(db):
    # The signature lists every file: a report cannot quietly lose an attachment.
    LabFile.objects.filter(result=_result("patient2")).delete()
    assert _result_status("patient2") == TAMPERED


def test_a_lab_result_re_signed_with_a_forged_key_reads_as_tampered(db):
    r = _result("patient1")
    values = r.unseal_all()
    values["values"] = "HbA1c 5.1 %"
    forger = SigningKey.generate(SignatureAlgorithm.ED25519)
    record = ClinicianKey.objects.create(
        user=r.technician,
        algorithm=forger.algorithm.value,
        key_id=forger.key_id,
        public_key=forger.verify_key.public_bytes(),
        wrapped_private=bytes(r.signing_key.wrapped_private),  # a genuine blob, someone else's
        active=False,
    )
    r.seal(SYSTEM_WRITE, values=values["values"])
    signature = forger.sign(result_record(r, values, []), purpose="lab-report").to_text()
    _update(LabResult, r.pk, values_enc=r.values_enc, signature=signature, signing_key=record.pk)
    assert _result_status("patient1") == TAMPERED


def test_the_genuine_keys_still_verify_after_the_caches_are_reset(db):
    service.reset_caches()
    assert _status("patient3") == VALID
    assert _result_status("patient2") == VALID
