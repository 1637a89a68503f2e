"""Loading the sealed encryption policy from a data directory: a missing or tampered model
never stops encryption, it gives the strongest suite (and says so in the log)."""

from __future__ import annotations

import logging

from _policy_models import COSTS

from carevault.modelstore.datadir import model_store
from carevault.modelstore.store import PAYLOAD
from carevault.security.policy import MODEL_NAME, STRONGEST, DataClass, PolicyInputs
from carevault.security.policy_model import load_policy
from carevault.security.policy_training import train


def test_loading_from_a_data_directory_without_a_model_gives_the_strongest_policy(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="carevault.security.policy"):
        policy = load_policy(tmp_path)
    assert not policy.has_model
    assert "no trained encryption policy" in caplog.text


def test_a_tampered_sealed_policy_is_refused_logged_and_replaced_by_the_strongest(tmp_path, caplog):
    report = train(
        model_store(tmp_path), seed=1, samples=500, held_out=50, n_estimators=2, costs=COSTS
    )
    assert load_policy(tmp_path).has_model
    payload = tmp_path / "models" / MODEL_NAME / f"v{report['version']}" / PAYLOAD
    data = bytearray(payload.read_bytes())
    data[-5] ^= 1
    payload.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="carevault.security.policy"):
        policy = load_policy(tmp_path)
    assert not policy.has_model
    assert "refused" in caplog.text
    assert policy.decide(PolicyInputs(DataClass.ORDINARY, 1, "doctor")).suite is STRONGEST
