"""The login app's actions take a ClientInfo, never a request: the command line, the worker and
the attack lab call them as the views do."""

from __future__ import annotations

import pytest

from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.clientinfo import NO_CLIENT, ClientInfo
from carevault.web.login import actions, twofactor

pytestmark = pytest.mark.django_db

WARD = ClientInfo(address="192.0.2.44", user_agent="ward workstation")
NEW_PASSWORD = "Quiet-Harbour-Lamp-57"


def latest(action: str) -> AuditEntry | None:
    return AuditEntry.objects.filter(action=action).order_by("-seq").first()


def test_revoking_every_session_outside_a_request_writes_its_row_without_an_address(users):
    actions.do_revoke_all_sessions(None, users["doctor2"], reason="a command", client=NO_CLIENT)
    entry = latest("session.revoke_all")
    assert entry is not None
    assert entry.address == ""
    assert entry.actor == ""
    assert User.objects.get(username="doctor2").session_epoch == 1


def test_a_password_reset_is_audited_with_the_clients_address(users):
    patient = users["patient2"]
    actions.do_reset_password(patient, password=NEW_PASSWORD, client=WARD)
    assert User.objects.get(pk=patient.pk).check_password(NEW_PASSWORD)
    entry = latest("account.password_reset")
    assert entry is not None
    assert entry.address == WARD.address
    assert entry.actor == "patient2"
    assert latest("session.revoke_all").address == WARD.address


def test_disabling_a_factor_that_is_not_on_is_refused_like_a_wrong_code(users):
    user = users["doctor1"]
    with pytest.raises(twofactor.SecondFactorFailed):
        actions.do_disable_totp(user, code="123456", client=WARD)
    assert latest("account.totp_disabled") is None
