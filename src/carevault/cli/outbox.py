"""``carevault outbox``: the e-mails a development server 'sent'."""

from __future__ import annotations

import argparse

from carevault import config
from carevault.cli._common import CommandError, Commands, add_command, emit
from carevault.cli._django import django_setup


def cmd_outbox(args: argparse.Namespace) -> int:
    """The e-mails a development server 'sent' (kept encrypted in the data directory)."""
    if config.is_production():
        raise CommandError("production mode sends e-mail through SMTP; there is no outbox")
    django_setup()
    from carevault.web.accounts.outbox import read_outbox

    messages = read_outbox()
    data = {"messages": [m.__dict__ for m in messages]}
    text = "\n\n".join(f"To: {', '.join(m.to)}\nSubject: {m.subject}\n\n{m.body}" for m in messages)
    emit(args, data, text or "the outbox is empty")
    return 0


def register(commands: Commands) -> None:
    add_command(commands, "outbox", cmd_outbox, "show the e-mails a development server sent")
