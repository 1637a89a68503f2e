"""``carevault manage clear_shared_state``: the operator's way to forget the shared security
state (every cache alias under this deployment's prefix), audited; ``--expired`` only culls."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.cache import caches
from django.core.management import call_command

from carevault.web.audit.models import AuditEntry
from carevault.web.login import challenges, throttle
from carevault.web.sharedstate.models import SharedStateEntry

pytestmark = pytest.mark.django_db


def test_clearing_forgets_blocks_counters_and_challenges_and_is_audited() -> None:
    throttle.block_address("198.51.100.7", "test", seconds=900)
    challenges.issue()
    assert throttle.is_blocked("198.51.100.7")
    out = StringIO()
    call_command("clear_shared_state", stdout=out)
    assert not throttle.is_blocked("198.51.100.7")
    assert not SharedStateEntry.objects.exists()
    assert "cleared the shared state" in out.getvalue()
    assert AuditEntry.objects.filter(action="security.shared_state_cleared").exists()


def test_expired_only_keeps_what_is_live() -> None:
    cache = caches["default"]
    cache.set("live", 1, 600)
    cache.set("old", 1, 600)
    SharedStateEntry.objects.filter(key=cache.make_key("old")).update(expires_at=time.time() - 1)
    out = StringIO()
    call_command("clear_shared_state", "--expired", stdout=out)
    assert "deleted 1 expired entries" in out.getvalue()
    assert cache.get("live") == 1
