"""When the security layer observes an audited action: the kinds that gate an attacker inside
the action's transaction (their answer must stop the request), every other kind once the action
commits, so an action that rolls back is never scored and a committed one is scored once."""

from __future__ import annotations

import pytest
from django.db import transaction

from carevault.web.audit.log import Outcome, record
from carevault.web.securitycore.models import SecurityEvent

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


def test_a_read_that_rolls_back_is_never_scored(
    users, patients, django_capture_on_commit_callbacks
):
    def read_then_fail() -> None:
        with transaction.atomic():
            record("phi.read", actor=users["doctor1"], patient_id=patients["patient1"].pk)
            raise Boom

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Boom):
        read_then_fail()
    assert not SecurityEvent.objects.filter(kind="phi_read").exists()


def test_a_committed_read_is_scored_once_after_it_commits(
    users, patients, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        entry = record("phi.read", actor=users["doctor1"], patient_id=patients["patient1"].pk)
        # Not while the action's transaction is open.
        assert not SecurityEvent.objects.filter(audit_seq=entry.seq).exists()
    [event] = SecurityEvent.objects.filter(audit_seq=entry.seq)
    assert (event.kind, event.actor) == ("phi_read", "doctor1")
    assert event.risk is not None


def test_a_denial_is_scored_inside_the_action_that_is_denied(users):
    # No commit: the answer to a denial cannot wait for one.
    entry = record("access.denied", actor=users["doctor2"], outcome=Outcome.DENIED)
    [event] = SecurityEvent.objects.filter(audit_seq=entry.seq)
    assert (event.kind, event.actor) == ("access_denied", "doctor2")
    assert event.risk is not None


def test_the_security_layers_own_entries_are_never_events(
    users, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        entry = record("security.response", outcome=Outcome.ALERT)
    assert not SecurityEvent.objects.filter(audit_seq=entry.seq).exists()
