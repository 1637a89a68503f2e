"""The trained ensemble on the request path: sealed into a data directory by ``carevault
security train``, loaded by the security layer, and answering real requests with its detectors."""

from __future__ import annotations

import pytest
from django.urls import reverse
from security_helpers import ATTACKER, WRONG, attempt, use_fast_hashes

from carevault.modelstore.datadir import model_store
from carevault.security import training
from carevault.security.scoring import MODEL_NAME
from carevault.web.login import throttle
from carevault.web.securitycore.models import Incident, SecurityEvent
from carevault.web.securitycore.runtime import reset_runtime, runtime

pytestmark = pytest.mark.django_db

DETECTORS = {"iforest", "ocsvm", "forest", "autoencoder"}


def train_into(data_dir) -> dict:
    # A day of traffic from 30 accounts: seconds to train, and enough to catch a guesser.
    config = training.TrainConfig(seed=1, days=1.0, users=30, n_jobs=1)
    return training.train(config, model_store(data_dir))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # Its own data directory: the session's shared one must keep the baseline for other tests.
    data_dir = tmp_path_factory.mktemp("trained")
    train_into(data_dir)
    return data_dir


@pytest.fixture
def trained(settings, model_dir):
    settings.DATA_DIR = model_dir
    reset_runtime()
    return model_dir


def test_the_sealed_ensemble_scores_the_requests_and_an_ordinary_session_stays_quiet(
    trained, client, packet_login, cast_password, patients, requests_commit
):
    assert packet_login(client, "doctor1", cast_password).json()["ok"]
    for name in ("patient1", "patient2"):
        assert (
            client.get(reverse("clinic:patient_detail", args=[patients[name].pk])).status_code
            == 200
        )
    events = list(
        SecurityEvent.objects.filter(
            actor="doctor1", kind__in=["login_success", "phi_read"]
        ).order_by("pk")
    )
    assert [e.kind for e in events] == ["login_success", "phi_read", "phi_read"]
    assert all(e.scorer == f"{MODEL_NAME} 1" for e in events)
    assert all(set(e.detectors) == DETECTORS for e in events)
    assert max(e.risk for e in events) < 0.5
    assert not Incident.objects.exists()
    health = runtime().health()
    assert (health["kind"], health["name"], health["version"]) == ("trained", MODEL_NAME, "1")


def test_a_password_guesser_is_flagged_by_the_ensemble_and_answered_on_the_account_only(
    trained, settings, users, cast_password, clock
):
    """Ten wrong passwords for one account are also what a person who forgot theirs types on a
    shared ward workstation (issue 12): the ensemble rates the guessing as risky within ten
    attempts, and the answer stays on the account (an incident, its back-off), never on the
    address or the keys."""
    use_fast_hashes(settings, cast_password)
    for _ in range(10):
        attempt(clock, "patient3", WRONG)
    assert not throttle.is_blocked(ATTACKER)
    assert throttle.check("patient3", ATTACKER).reason == throttle.REASON_ACCOUNT
    failures = SecurityEvent.objects.filter(kind="login_failure", actor="patient3")
    assert failures.count() == 10
    assert max(e.risk for e in failures) >= 0.5
    incident = Incident.objects.get(subjects__key="account:patient3")
    # Failed sign-ins permit no response beyond the account's own back-off.
    assert not incident.responses.exclude(action="step_up").exists()
    # The explanation names the detectors and the features that moved the score.
    assert all(name in incident.explanation for name in DETECTORS)
    assert "fail_account_1h=" in incident.explanation


def test_a_newer_sealed_model_is_picked_up_without_a_restart(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.SECURITY_MODEL_CHECK_SECONDS = 0
    reset_runtime()
    assert runtime().loaded.kind == "baseline"
    train_into(tmp_path)
    loaded = runtime().loaded
    assert (loaded.kind, loaded.version) == ("trained", "1")


def test_a_tampered_model_is_refused_and_the_baseline_keeps_guarding(settings, tmp_path):
    train_into(tmp_path)
    sealed = next((tmp_path / "models" / MODEL_NAME).glob("v1/model.skops.enc"))
    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 0x01
    sealed.write_bytes(bytes(data))
    settings.DATA_DIR = tmp_path
    reset_runtime()
    loaded = runtime().loaded
    assert loaded.kind == "baseline"
    assert "refused" in loaded.note
