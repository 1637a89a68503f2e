"""Django for the commands that need the database: set up on demand, so that the commands that
do not (selfcheck, keys split, bench crypto, ...) start without it."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from carevault import config
from carevault.cli._common import CommandError


def django_setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "carevault.web.settings")
    django.setup()


def require_database() -> None:
    from django.db import connection

    if "audit_auditentry" not in connection.introspection.table_names():
        raise CommandError(
            "the database has no CareVault tables yet: run `carevault demo --seed-only` or "
            "`carevault manage migrate` first"
        )


# pg_advisory_lock's key for "a process is migrating this database" (any fixed 64-bit number).
_MIGRATION_LOCK_KEY = 0x43415245_5641554C  # "CAREVAUL"


def migrate() -> None:
    """Apply pending migrations. Several app servers started at once (a rolling deploy, a
    compose file, a restart after an upgrade) would race to apply the same migration: one holds
    a lock while it migrates, the others wait for it and then find nothing to do."""
    from django.core.management import call_command

    with _migration_lock():
        call_command("migrate", interactive=False, verbosity=0)
    # An install made before the data directory was owner-only: tighten what it holds.
    config.tighten_tree(config.secure_data_dir())


@contextmanager
def _migration_lock() -> Iterator[None]:
    from django.db import connection

    if connection.vendor == "postgresql":
        # Session-level advisory lock: held across migrate's own transactions, released by the
        # unlock below or, if this process dies, by PostgreSQL when its connection closes.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [_MIGRATION_LOCK_KEY])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_MIGRATION_LOCK_KEY])
        return
    # SQLite: the database is a file in the data directory, so a lock file beside it serves
    # every process on the machine (the kernel drops it if the holder dies).
    lock_path = config.secure_data_dir() / "migrate.lock"
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
