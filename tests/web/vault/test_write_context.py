"""A write's explicit context (issue 15): the action builds it once from its acting user and its
client, the registered risk source supplies the session's risk and the host's load, and sealing
hands it to the policy; no model method reads an ambient request."""

from __future__ import annotations

import pytest
from vault_policy_helpers import FakeRiskSource, policy_proposing, risk_source_registered

from carevault.crypto import Suite, parse_header
from carevault.security.policy import DataClass
from carevault.web.clientinfo import NO_CLIENT, ClientInfo
from carevault.web.clinic.models import ClinicalNote, Diagnosis
from carevault.web.vault import context
from carevault.web.vault.context import (
    IDLE,
    NO_RISK_SOURCE,
    SYSTEM_WRITE,
    HostLoad,
    WriteContext,
    write_context,
)
from carevault.web.vault.models import EncryptionDecision

BUSY = HostLoad(cpu_percent=92.0, latency_ms=480.0, traffic_rps=55.0)
IN_A_SESSION = ClientInfo(address="10.0.0.7", user_agent="test", session="a" * 32)


def logged_inputs(record: object) -> dict[str, object]:
    return EncryptionDecision.objects.get(
        table=record._meta.db_table,  # type: ignore[attr-defined]
        row=str(record.pk),  # type: ignore[attr-defined]
    ).inputs


def test_the_system_context_is_todays_default_for_writes_outside_a_session():
    assert WriteContext(role="system", session_risk=0.0, load=IDLE) == SYSTEM_WRITE
    assert SYSTEM_WRITE.data_class is None


def test_a_write_outside_any_session_is_made_as_the_system_whoever_acts(users):
    source = FakeRiskSource(risk=0.9, load=BUSY)
    with risk_source_registered(source):
        ctx = write_context(users["doctor1"], NO_CLIENT)
    assert (ctx.role, ctx.session_risk) == ("system", 0.0)
    assert ctx.load == BUSY  # the host's load is the process's, whoever writes
    assert source.asked == []  # no session, nothing to look up


def test_a_write_in_a_session_carries_the_actors_role_and_the_sessions_risk(users):
    source = FakeRiskSource(risk=0.42, load=BUSY)
    with risk_source_registered(source):
        ctx = write_context(users["labtech1"], IN_A_SESSION)
    assert ctx == WriteContext(role="labtech", session_risk=0.42, load=BUSY)
    assert source.asked == [IN_A_SESSION.session]


@pytest.mark.parametrize(("reported", "kept"), [(1.7, 1.0), (-0.3, 0.0)])
def test_a_risk_out_of_range_is_clamped(users, reported, kept):
    with risk_source_registered(FakeRiskSource(risk=reported)):
        assert write_context(users["doctor1"], IN_A_SESSION).session_risk == kept


def test_nobody_signed_in_writes_as_the_system_even_in_a_session():
    with risk_source_registered(FakeRiskSource(risk=0.5)):
        ctx = write_context(None, IN_A_SESSION)
    assert (ctx.role, ctx.session_risk) == ("system", 0.5)


def test_with_no_source_registered_the_safe_defaults_apply(users):
    with risk_source_registered(NO_RISK_SOURCE):
        ctx = write_context(users["doctor1"], IN_A_SESSION)
        assert context.risk_source().system_floor() is None
    assert (ctx.session_risk, ctx.load) == (0.0, IDLE)


def test_role_risk_and_load_reach_the_policy_through_the_context(patients, users, monkeypatch):
    patient = patients["patient1"]
    with risk_source_registered(FakeRiskSource(risk=0.85, load=BUSY)):
        ctx = write_context(users["doctor1"], IN_A_SESSION)
    note = ClinicalNote(patient=patient, author=users["doctor1"])
    with policy_proposing(monkeypatch, Suite.AES_128_GCM):
        note.seal(ctx, body="Sealed with an explicit context.")
    inputs = logged_inputs(note)
    assert (inputs["role"], inputs["risk"]) == ("doctor", pytest.approx(0.85))
    assert (inputs["cpu_percent"], inputs["latency_ms"], inputs["traffic_rps"]) == (
        92.0,
        480.0,
        55.0,
    )
    assert parse_header(bytes(note.body_enc)).suite.level == 4  # risk 0.85: level 4


def test_the_floor_is_asked_of_the_source_at_every_decision(patients, users, monkeypatch):
    patient = patients["patient1"]
    note = ClinicalNote(patient=patient, author=users["doctor1"])
    source = FakeRiskSource(floor=Suite.RSA_3072_OAEP_AES_256_GCM)
    with policy_proposing(monkeypatch, Suite.AES_128_GCM), risk_source_registered(source):
        note.seal(SYSTEM_WRITE, body="Written while a floor is raised.")
    assert parse_header(bytes(note.body_enc)).suite is Suite.RSA_3072_OAEP_AES_256_GCM


def test_a_named_data_class_raises_the_records_own_but_never_lowers_it(
    patients, users, monkeypatch
):
    patient = patients["patient1"]
    note = ClinicalNote(patient=patient, author=users["doctor1"])
    diagnosis = Diagnosis(patient=patient, doctor=users["doctor1"], data_class="sensitive")
    with policy_proposing(monkeypatch, Suite.AES_128_GCM):
        note.seal(WriteContext("doctor", 0.0, IDLE, data_class=DataClass.SENSITIVE), body="Raised.")
        diagnosis.seal(
            WriteContext("doctor", 0.0, IDLE, data_class=DataClass.ORDINARY),
            code="F32.1",
            description="Not lowered.",
        )
    assert logged_inputs(note)["data_class"] == "sensitive"
    assert parse_header(bytes(note.body_enc)).suite is Suite.AES_256_GCM
    assert logged_inputs(diagnosis)["data_class"] == "sensitive"
    assert parse_header(bytes(diagnosis.code_enc)).suite is Suite.AES_256_GCM
