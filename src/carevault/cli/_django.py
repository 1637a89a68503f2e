"""Django for the commands that need the database: set up on demand, so that the commands that
do not (selfcheck, keys split, bench crypto, ...) start without it."""

from __future__ import annotations

import os

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


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    # An install made before the data directory was owner-only: tighten what it holds.
    config.tighten_tree(config.secure_data_dir())
