"""The diagnosis API: authorised clients get the label and the features that drove it (never a
confidence), within a query budget, and are cut off when their queries look like an extraction
attack; the homomorphic endpoint scores encrypted patients it cannot read."""

from __future__ import annotations

import json

import numpy as np
from diagnosis_helpers import NAMES, SPLIT, case
from django.urls import reverse

from carevault.modelguard.homomorphic_client import HomomorphicClient
from carevault.modelguard.models import fit
from carevault.web.audit.models import AuditEntry
from carevault.web.diagnosis import serving
from carevault.web.diagnosis.models import ClientCutOff, DiagnosisRun


def url(patient) -> str:
    return reverse("api:patient_diagnoses", args=[patient.pk])


def post(client, patient, payload):
    return client.post(url(patient), json.dumps(payload), content_type="application/json")


def test_a_client_gets_the_label_and_the_driving_features_but_no_confidence(
    client_for, patients, served
):
    patient = patients["patient1"]
    response = post(client_for("doctor1"), patient, {"features": case(3), "model": "logistic"})
    assert response.status_code == 201
    body = response.json()
    assert body["label"] in ("malignant", "benign")
    assert body["confidence"] is None
    assert body["policy"] == "label-only"
    assert (body["model"], body["version"]) == ("diagnosis-logistic", 1)
    assert [f["contribution"] for f in body["top_features"]] == [None] * 5
    assert {f["feature"] for f in body["top_features"]} <= set(NAMES)
    run = DiagnosisRun.objects.get(pk=body["id"])
    assert json.loads(run.unseal("result"))["client"] == "api"


def test_features_may_be_a_list_in_the_data_sets_order(client_for, patients, served):
    values = list(case(4).values())
    response = post(client_for("doctor1"), patients["patient1"], {"features": values})
    assert response.status_code == 201


def test_bad_input_is_a_400_naming_what_is_wrong(client_for, patients, served):
    doctor = client_for("doctor1")
    patient = patients["patient1"]
    missing = post(doctor, patient, {})
    assert (missing.status_code, missing.json()["error"]["field"]) == (400, "features")
    short = post(doctor, patient, {"features": [1.0, 2.0]})
    assert short.status_code == 400
    assert "expected 30 features" in short.json()["error"]["message"]
    text = post(doctor, patient, {"features": {**case(0), "mean area": "big"}})
    assert (text.status_code, text.json()["error"]["field"]) == (400, "mean area")
    model = post(doctor, patient, {"features": case(0), "model": "oracle"})
    assert (model.status_code, model.json()["error"]["field"]) == (400, "model")
    assert not DiagnosisRun.objects.exists()


def test_the_query_budget_answers_429_with_retry_after(client_for, patients, served):
    doctor = client_for("doctor1")
    patient = patients["patient1"]
    answered = 0
    for i in range(25):
        response = post(doctor, patient, {"features": case(i)})
        if response.status_code != 201:
            break
        answered += 1
    assert answered == 20  # the API client's hourly budget
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    refused = AuditEntry.objects.filter(action="prediction.refused").latest("seq")
    assert refused.outcome == "denied"


def test_probing_the_feature_box_gets_the_client_cut_off_and_raises_an_alert(
    client_for, patients, served
):
    doctor = client_for("doctor1")
    patient = patients["patient1"]
    rng = np.random.default_rng(5)
    low, high = SPLIT.X_train.min(axis=0), SPLIT.X_train.max(axis=0)
    statuses = []
    for _ in range(10):
        probe = rng.uniform(low, high).tolist()
        statuses.append(post(doctor, patient, {"features": probe}).status_code)
        if statuses[-1] == 403:
            break
    assert statuses[-1] == 403
    assert len(statuses) <= 6
    alert = AuditEntry.objects.filter(action="prediction.refused", outcome="alert").get()
    assert alert.details["client"] == "api"
    # Still cut off for real cases afterwards, in every app server (it is in the database)...
    serving.reset()
    again = post(doctor, patient, {"features": case(0)})
    assert (again.status_code, again.json()["error"]["code"]) == (403, "cut_off")
    # ...until the security officer lifts it from the dashboard (audited).
    officer = client_for("admin")
    dashboard = officer.get(reverse("officer:dashboard")).content.decode()
    cut = ClientCutOff.objects.get()
    assert reverse("officer:lift_cut_off", args=[cut.pk]) in dashboard
    officer.post(reverse("officer:lift_cut_off", args=[cut.pk]))
    assert ClientCutOff.objects.get().lifted_at is not None
    assert AuditEntry.objects.filter(action="modelguard.cut_off_lifted").exists()
    assert post(doctor, patient, {"features": case(0)}).status_code == 201


def he_url() -> str:
    return reverse("api:diagnosis_homomorphic")


def test_the_homomorphic_endpoint_scores_patients_it_cannot_read(client_for, served):
    client = HomomorphicClient(len(NAMES))
    cases = SPLIT.X_test[:6]
    response = client_for("doctor1").post(
        he_url(), client.encrypt_columns(cases), content_type="application/octet-stream"
    )
    assert response.status_code == 200
    assert response["X-CareVault-Model-Version"] == "1"
    probabilities = client.decrypt_proba(response.content, expected_patients=6)
    plain = fit("logistic", SPLIT.X_train, SPLIT.y_train).predict(cases)
    assert ((probabilities >= 0.5).astype(int) == plain).all()
    entry = AuditEntry.objects.filter(action="prediction.homomorphic").latest("seq")
    assert entry.details["patients"] == 6


def test_the_homomorphic_endpoint_refuses_what_is_not_a_request(client_for, served):
    doctor = client_for("doctor1")
    garbage = doctor.post(he_url(), b"not a ckks request", content_type="application/octet-stream")
    assert garbage.status_code == 400
    wrong_type = doctor.post(he_url(), {"x": "1"})
    assert wrong_type.status_code == 400
    assert "octet-stream" in wrong_type.json()["error"]["message"]


def test_the_homomorphic_budget_counts_every_patient_in_a_batch(client_for, served, settings):
    settings.HE_PATIENTS_PER_HOUR = 5
    settings.HE_PATIENTS_PER_DAY = 5
    client = HomomorphicClient(len(NAMES))
    response = client_for("doctor1").post(
        he_url(), client.encrypt_columns(SPLIT.X_test[:6]), content_type="application/octet-stream"
    )
    assert response.status_code == 429


def test_encrypted_patients_count_against_the_same_budget_as_the_label_only_api(
    client_for, patients, served
):
    # The API budget is 20 an hour (guard.DEFAULT_CONFIG): 15 encrypted patients, then the
    # label-only API answers 5 more and refuses the sixth, and a batch that no longer fits is
    # refused whole.
    doctor = client_for("doctor1")
    client = HomomorphicClient(len(NAMES))
    first = doctor.post(
        he_url(), client.encrypt_rows(SPLIT.X_test[:15]), content_type="application/octet-stream"
    )
    assert first.status_code == 200
    answered = [
        post(doctor, patients["patient1"], {"features": case(i)}).status_code for i in range(6)
    ]
    assert answered == [201] * 5 + [429]
    again = doctor.post(
        he_url(), client.encrypt_rows(SPLIT.X_test[:1]), content_type="application/octet-stream"
    )
    assert again.status_code == 429
