"""An e-mail backend for development, demos and tests: an encrypted outbox.

Django's file backend would leave every message in the clear in the data directory, and the
messages CareVault sends go to patients: their e-mail address is PHI, and a reset link is a
credential for half an hour. So each message is sealed with the master key
(``{"purpose": "outbox", "message": <file name>}``: a message cannot be passed off under another
file's name) and written atomically to ``EMAIL_OUTBOX_DIR`` (``<data dir>/outbox``) as
``<time>-<random>.msg``; the file name says nothing about the recipient.

:func:`read_outbox` opens them again (tests; an operator of a deployment without SMTP). In
production, set ``CAREVAULT_EMAIL_HOST`` (and the other ``CAREVAULT_EMAIL_*`` settings) to deliver
by SMTP instead.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from carevault.platform.files import atomic_write_bytes
from carevault.web.vault import service

from .outbox_store import SUFFIX, message_context


@dataclass(frozen=True)
class OutboxMessage:
    name: str
    sent_at: float
    sender: str
    to: list[str]
    subject: str
    body: str


def outbox_dir() -> Path:
    return Path(settings.EMAIL_OUTBOX_DIR)


def _context(name: str) -> dict[str, str]:
    return message_context(name)


class EncryptedOutboxBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = 0
        for message in email_messages:
            recipients = list(message.recipients())
            if not recipients:
                continue
            name = f"{time.time_ns():020d}-{secrets.token_hex(8)}{SUFFIX}"
            payload = {
                "sent_at": time.time(),
                "from": str(message.from_email),
                "to": recipients,
                "subject": str(message.subject),
                "body": str(message.body),
            }
            sealed = service.master().wrap(json.dumps(payload).encode(), _context(name))
            try:
                atomic_write_bytes(outbox_dir() / name, sealed)
            except OSError:
                if not self.fail_silently:
                    raise
                continue
            sent += 1
        return sent


def read_outbox(directory: Path | None = None) -> list[OutboxMessage]:
    """Every message in the outbox, oldest first (a file that does not open raises)."""
    folder = directory or outbox_dir()
    if not folder.is_dir():
        return []
    messages = []
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        data: dict[str, Any] = json.loads(
            service.unwrap_current(path.read_bytes(), _context(path.name))
        )
        messages.append(
            OutboxMessage(
                name=path.name,
                sent_at=float(data["sent_at"]),
                sender=str(data["from"]),
                to=[str(address) for address in data["to"]],
                subject=str(data["subject"]),
                body=str(data["body"]),
            )
        )
    return messages
