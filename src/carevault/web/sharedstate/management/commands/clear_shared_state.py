"""``carevault manage clear_shared_state``: forget this deployment's shared security state.

Deletes every entry under this deployment's key prefix in every cache alias (Redis when
``REDIS_URL`` is set, else the ``sharedstate_entry`` table): login back-offs and counters,
address blocks, challenges, the diagnosis budgets and extraction histories. What is kept in the
database proper stays: suspensions, diagnosis cut-offs, incidents, the raised floor. With
``--expired``, only entries that have expired already (the database store; Redis expires them
by itself).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.management.base import BaseCommand, CommandParser

from carevault.web.audit.log import record
from carevault.web.sharedstate.backend import SharedStateCache


class Command(BaseCommand):
    help = "Forget the shared security state (throttle counters, blocks, budgets, challenges)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--expired", action="store_true", help="delete only entries that have expired"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["expired"]:
            deleted = 0
            for alias in settings.CACHES:
                cache = caches[alias]
                if isinstance(cache, SharedStateCache):
                    while (batch := cache.cull()) > 0:
                        deleted += batch
            self.stdout.write(f"deleted {deleted} expired entries")
            return
        for alias in settings.CACHES:
            caches[alias].clear()
        # An operator wiping every block and counter is worth a line in the audit log.
        record("security.shared_state_cleared", details={"aliases": sorted(settings.CACHES)})
        self.stdout.write(f"cleared the shared state ({', '.join(sorted(settings.CACHES))})")
