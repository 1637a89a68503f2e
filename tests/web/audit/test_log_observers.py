"""Observers of the audit log are told about each entry when their registration says: after
the action commits (the default), or inside its transaction (hard rules only); never about an
action that rolls back, never about what an observer writes itself, and an observer that fails
never breaks the action."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction

from carevault.web.audit import log
from carevault.web.audit.models import AuditEntry
from carevault.web.clientinfo import ClientInfo

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


@pytest.fixture
def seen() -> Iterator[dict[str, list[str]]]:
    """Two observers, one of each kind, that note the actions they are told about."""
    noted: dict[str, list[str]] = {"committed": [], "in_transaction": []}

    def committed(entry: AuditEntry, client: Any) -> None:
        noted["committed"].append(entry.action)

    def in_transaction(entry: AuditEntry, client: Any) -> None:
        noted["in_transaction"].append(entry.action)

    log.add_observer(committed)
    log.add_observer(in_transaction, when=log.IN_TRANSACTION)
    yield noted
    log.remove_observer(committed)
    log.remove_observer(in_transaction)


def test_an_observer_is_told_after_commit_unless_it_registered_as_synchronous(
    seen, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        log.record("test.action")
        assert seen == {"committed": [], "in_transaction": ["test.action"]}
    assert seen == {"committed": ["test.action"], "in_transaction": ["test.action"]}


def test_an_action_that_rolls_back_reaches_only_the_synchronous_observer(
    seen, django_capture_on_commit_callbacks
):
    def action() -> None:
        with transaction.atomic():
            log.record("test.rolled_back")
            raise Boom

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(Boom):
        action()
    assert not callbacks
    assert seen == {"committed": [], "in_transaction": ["test.rolled_back"]}


def test_entries_written_unobserved_reach_no_observer(seen, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), log.unobserved():
        log.record("test.own_write")
    assert seen == {"committed": [], "in_transaction": []}


def test_registering_again_replaces_the_registration(seen, django_capture_on_commit_callbacks):
    def twice(entry: AuditEntry, request: Any) -> None:
        seen["committed"].append("twice")

    log.add_observer(twice)
    log.add_observer(twice, when=log.IN_TRANSACTION)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            log.record("test.action")
        # Once, synchronously (the last registration), not also after commit.
        assert seen["committed"].count("twice") == 1
    finally:
        log.remove_observer(twice)


@pytest.mark.parametrize("when", [log.AFTER_COMMIT, log.IN_TRANSACTION])
def test_an_observer_that_fails_never_breaks_the_action(when, django_capture_on_commit_callbacks):
    def broken(entry: AuditEntry, request: Any) -> None:
        raise RuntimeError("observer fell over")

    log.add_observer(broken, when=when)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            entry = log.record("test.action")
    finally:
        log.remove_observer(broken)
    assert AuditEntry.objects.filter(seq=entry.seq, action="test.action").exists()


def test_an_observer_is_told_the_client_the_entry_was_written_for_and_never_a_request(
    django_capture_on_commit_callbacks,
):
    told: list[ClientInfo | None] = []

    def observer(entry: AuditEntry, client: ClientInfo | None) -> None:
        told.append(client)

    ward = ClientInfo(address="10.77.0.9", user_agent="ward browser")
    log.add_observer(observer)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            entry = log.record("test.for_a_client", client=ward)
            log.record("test.without_one")
    finally:
        log.remove_observer(observer)
    assert told == [ward, None]
    assert entry.address == "10.77.0.9"
