"""``carevault manage ...``: Django's management commands (migrate, shell, ...)."""

from __future__ import annotations

import argparse

from carevault.cli._common import Commands
from carevault.cli._django import django_setup


def cmd_manage(args: argparse.Namespace) -> int:
    django_setup()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["carevault manage", *args.rest])
    return 0


def register(commands: Commands) -> None:
    manage = commands.add_parser("manage", help="Django management commands (migrate, shell, ...)")
    manage.add_argument("rest", nargs=argparse.REMAINDER)
    manage.set_defaults(handler=cmd_manage)
