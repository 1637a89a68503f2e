"""The doctor's diagnosis assistant: features typed in or taken from a lab result, the sealed
model's result, version and explanation kept encrypted in the record, bad input refused with
the feature named, the last good model kept when a newer one is refused."""

from __future__ import annotations

import json

from diagnosis_helpers import NAMES, SPLIT, case, first_case
from django.urls import reverse

from carevault.crypto import parse_header
from carevault.web.audit.models import AuditEntry
from carevault.web.diagnosis import serving
from carevault.web.diagnosis.models import DiagnosisRun
from carevault.web.labs import actions as labs
from carevault.web.securitycore.models import SecurityEvent


def page(patient) -> str:
    return reverse("diagnosis:run", args=[patient.pk])


def form_data(features: dict[str, float], model: str = "logistic") -> dict[str, str]:
    data = {"model": model, "lab_result": ""}
    for i, name in enumerate(NAMES):
        if name in features:
            data[f"f{i}"] = repr(features[name])
    return data


def test_a_doctor_runs_a_diagnosis_and_it_is_kept_encrypted_in_the_record(
    client_for, patients, served, requests_commit
):
    patient = patients["patient1"]
    doctor = client_for("doctor1")
    malignant = first_case(1)
    response = doctor.post(page(patient), form_data(case(malignant)))
    assert response.status_code == 302
    shown = doctor.get(page(patient)).content.decode()
    assert "malignant" in shown
    assert "diagnosis-logistic v1" in shown
    assert "P(malignant) ≈ 0." in shown or "P(malignant) ≈ 1.0" in shown  # rounded to 0.1
    run = DiagnosisRun.objects.get(patient=patient)
    for sealed in (run.inputs_enc, run.result_enc):
        assert parse_header(bytes(sealed)).suite  # an envelope, not JSON
        assert b"malignant" not in bytes(sealed)
        assert b"mean radius" not in bytes(sealed)
    result = json.loads(run.unseal("result"))
    assert result["label"] == "malignant"
    assert result["version"] == 1
    assert result["confidence"] == round(result["confidence"], 1)
    assert len(result["top_features"]) == 5
    assert json.loads(run.unseal("inputs"))["mean radius"] == SPLIT.X_test[malignant][0]
    entry = AuditEntry.objects.filter(action="prediction.run").latest("seq")
    assert entry.details["model"] == "diagnosis-logistic"
    assert "malignant" not in json.dumps(entry.details)
    assert SecurityEvent.objects.filter(kind="prediction", actor="doctor1").exists()


def test_the_patient_page_links_doctors_to_the_assistant(client_for, patients):
    detail = reverse("clinic:patient_detail", args=[patients["patient1"].pk])
    assert page(patients["patient1"]) in client_for("doctor1").get(detail).content.decode()


def test_a_feature_out_of_range_is_refused_by_name_and_nothing_is_kept(
    client_for, patients, served
):
    features = case(0)
    features["mean radius"] = 9000.0
    response = client_for("doctor1").post(page(patients["patient1"]), form_data(features))
    assert response.status_code == 400
    assert "mean radius" in response.content.decode()
    assert "plausible range" in response.content.decode()
    assert not DiagnosisRun.objects.exists()


def test_a_missing_feature_is_named(client_for, patients, served):
    features = case(0)
    del features["worst symmetry"]
    response = client_for("doctor1").post(page(patients["patient1"]), form_data(features))
    assert response.status_code == 400
    assert "worst symmetry" in response.content.decode()


def test_features_are_taken_from_a_lab_result_that_reports_them(
    client_for, patients, users, served
):
    patient = patients["patient2"]
    doctor = patient.care_team.get().doctor
    benign = first_case(0)
    values = "\n".join(f"{n}: {v}" for n, v in case(benign).items())
    request = labs.do_request_lab_test(doctor, patient, test="FNA cytology, breast")
    result = labs.do_submit_lab_result(users["labtech1"], request, values=values)
    data = {"model": "forest", "lab_result": str(result.pk)}
    response = client_for("doctor1").post(page(patient), data)
    assert response.status_code == 302
    stored = json.loads(DiagnosisRun.objects.get(patient=patient).unseal("result"))
    assert (stored["label"], stored["kind"]) == ("benign", "forest")


def test_a_lab_result_without_the_features_is_explained(client_for, patients, users, served):
    patient = patients["patient2"]
    request = labs.do_request_lab_test(
        patient.care_team.get().doctor, patient, test="Full blood count"
    )
    result = labs.do_submit_lab_result(users["labtech1"], request, values="Hb 135 g/L")
    response = client_for("doctor1").post(
        page(patient), {"model": "logistic", "lab_result": str(result.pk)}
    )
    assert response.status_code == 400
    assert "reports none of the diagnosis features" in response.content.decode()


def test_a_doctor_outside_the_care_team_gets_404(client_for, patients, served):
    response = client_for("doctor2").post(page(patients["patient1"]), form_data(case(0)))
    assert response.status_code == 404
    assert not DiagnosisRun.objects.exists()


def test_a_tampered_newer_model_is_refused_reported_and_the_last_good_one_serves(
    client_for, patients, served, tmp_path, settings
):
    import shutil

    from carevault.modelguard import diagnosis_training
    from carevault.modelstore.datadir import model_store

    # A copy of the sealed models, so the session's stay intact.
    data_dir = tmp_path / "data"
    shutil.copytree(served, data_dir)
    settings.DATA_DIR = data_dir
    serving.reset()
    doctor = client_for("doctor1")
    assert doctor.post(page(patients["patient1"]), form_data(case(0))).status_code == 302
    diagnosis_training.train(model_store(data_dir), seed=0)  # v2 of both
    sealed = data_dir / "models" / "diagnosis-logistic" / "v2" / "model.skops.enc"
    raw = bytearray(sealed.read_bytes())
    raw[len(raw) // 2] ^= 1
    sealed.write_bytes(bytes(raw))
    serving.service().refresh()
    assert doctor.post(page(patients["patient1"]), form_data(case(1))).status_code == 302
    latest = DiagnosisRun.objects.filter(patient=patients["patient1"]).first()
    assert json.loads(latest.unseal("result"))["version"] == 1
    alert = AuditEntry.objects.filter(action="model.refused").latest("seq")
    assert alert.outcome == "alert"
    assert alert.details["model"] == "diagnosis-logistic"
    assert alert.details["serving_version"] == 1
    # The security layer treats it as stored data failing its check (a hard rule), without
    # blaming the doctor whose request found it.
    event = SecurityEvent.objects.get(kind="signature_failure")
    assert event.rules == ["signature_failure_at_rest"]
    from carevault.web.accounts.models import User

    assert not User.objects.get(username="doctor1").is_suspended
