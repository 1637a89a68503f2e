"""Plugging the task queue into the layers below it, which cannot import it: the vault's
re-encryption (a raised floor) and the audit sealer hand their work to :mod:`.tasks`."""

from __future__ import annotations


def install() -> None:
    from carevault.web.audit import sealing
    from carevault.web.vault import reencrypt

    from . import tasks

    reencrypt.set_background_runner(tasks.enqueue_reencryption)
    sealing.set_sealer(tasks.enqueue_seal)
