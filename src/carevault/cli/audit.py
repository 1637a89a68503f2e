"""``carevault audit verify | seal | checkpoint``: the tamper-evident audit log."""

from __future__ import annotations

import argparse

from carevault.cli._common import EXIT_FAILURE, Commands, add_command, emit
from carevault.cli._django import django_setup, require_database


def cmd_audit_verify(args: argparse.Namespace) -> int:
    django_setup()
    require_database()
    from carevault.web.audit import sealing
    from carevault.web.audit.log import verify_chain

    # Seal first: what is sealed from now on can no longer be deleted unseen, and a batch a
    # killed sealer committed but did not anchor is anchored. Sealing launders nothing: an
    # edited entry keeps its wrong MAC, a deleted sealed one its batch's root.
    sealing.seal()
    report = verify_chain()
    text = (
        f"audit chain intact: {report.entries} entries"
        f" ({report.sealed} sealed in {report.batches} batches, {report.unsealed} unsealed)"
        if report.ok
        else "audit chain BROKEN:\n" + "\n".join(f"  {p}" for p in report.problems)
    )
    emit(args, report.as_dict(), text)
    return 0 if report.ok else EXIT_FAILURE


def cmd_audit_seal(args: argparse.Namespace) -> int:
    django_setup()
    require_database()
    from carevault.web.audit import anchor, sealing

    result = sealing.seal()
    if result.refused:
        emit(args, result.as_dict(), f"audit seal: REFUSED: {result.refused} (run audit verify)")
        return EXIT_FAILURE
    if result.skipped:
        text = "audit seal: another sealer is running; nothing sealed here"
    else:
        text = (
            f"audit seal: {result.entries} entries sealed in {len(result.batches)} batch(es); "
            f"{len(result.anchored)} batch(es) anchored in {anchor.checkpoint_file()}"
        )
    emit(args, result.as_dict(), text)
    return 0


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    """Kept for scripts: a seal, answered with the newest anchored checkpoint."""
    django_setup()
    require_database()
    from carevault.web.audit import anchor, sealing

    sealing.seal()
    written = anchor.latest_checkpoint() or {"batch": None, "seq": 0, "count": 0}
    text = (
        f"audit checkpoint: batch {written['batch']} (entry {written['seq']}) anchored in "
        f"{anchor.checkpoint_file()}"
    )
    emit(args, written, text)
    return 0


def register(commands: Commands) -> None:
    audit = commands.add_parser("audit", help="the tamper-evident audit log")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    add_command(
        actions,
        "verify",
        cmd_audit_verify,
        "seal, then check the audit log for edits, deletions and truncation",
    )
    add_command(
        actions,
        "seal",
        cmd_audit_seal,
        "seal unsealed audit entries in signed batches, anchored outside the database",
    )
    add_command(actions, "checkpoint", cmd_audit_checkpoint, "seal and anchor the audit log")
