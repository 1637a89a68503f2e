"""``carevault audit verify | checkpoint``: the tamper-evident audit log."""

from __future__ import annotations

import argparse

from carevault.cli._common import EXIT_FAILURE, Commands, add_command, emit
from carevault.cli._django import django_setup, require_database


def cmd_audit_verify(args: argparse.Namespace) -> int:
    django_setup()
    require_database()
    from carevault.web.audit import anchor
    from carevault.web.audit.log import verify_chain

    report = verify_chain()
    text = (
        f"audit chain intact: {report.entries} entries"
        if report.ok
        else "audit chain BROKEN:\n" + "\n".join(f"  {p}" for p in report.problems)
    )
    if report.ok:
        # Only a verified chain is anchored: a checkpoint over a broken one would launder it.
        anchor.write_checkpoint()
    emit(args, report.as_dict(), text)
    return 0 if report.ok else EXIT_FAILURE


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    django_setup()
    require_database()
    from carevault.web.audit import anchor

    written = anchor.write_checkpoint()
    text = f"audit checkpoint: entry {written['seq']} anchored in {anchor.checkpoint_file()}"
    emit(args, written, text)
    return 0


def register(commands: Commands) -> None:
    audit = commands.add_parser("audit", help="the tamper-evident audit log")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    add_command(
        actions, "verify", cmd_audit_verify, "check the audit chain for edits and deletions"
    )
    add_command(
        actions, "checkpoint", cmd_audit_checkpoint, "anchor the audit head in a signed file"
    )
