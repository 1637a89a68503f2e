"""The audit chain's head, anchored outside the database in signed checkpoints.

API (for ``carevault audit``, the backup command and the app):

* :func:`write_checkpoint` -- sign and append the current head (seq, head MAC, entry count);
* :func:`latest_checkpoint` -- the newest valid audit checkpoint, or None;
* :func:`checkpoint_file` -- where the checkpoints are: ``DATA_DIR/`` +
  :data:`carevault.modelstore.anchor.CHECKPOINTS` (setting ``AUDIT_ANCHOR_DIR``, the data
  directory unless a test points it elsewhere; it holds the anchor key too);
* :func:`check` -- the problems a chain walk's result shows against the checkpoints.

A checkpoint is written every :data:`CHECKPOINT_EVERY` entries (after the entry's transaction
commits), by every successful ``carevault audit verify`` and by ``carevault audit checkpoint``.
The file format and signing are in :mod:`carevault.modelstore.anchor`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings

from carevault.modelstore.anchor import Anchor, AnchorState, checkpoints_path

from . import keys
from .models import AuditEntry, AuditHead

CHECKPOINT_EVERY = 100

logger = logging.getLogger(__name__)


def checkpoint_file() -> Path:
    return checkpoints_path(settings.AUDIT_ANCHOR_DIR)


def anchor() -> Anchor:
    return Anchor(settings.AUDIT_ANCHOR_DIR, keys.keys().master())


def write_checkpoint() -> dict[str, Any]:
    """Sign and append the chain's current head; the checkpoint as written."""
    head = AuditHead.objects.filter(id=1).first()
    seq, digest = (head.seq, head.digest) if head is not None else (0, "0" * 64)
    count = AuditEntry.objects.filter(seq__lte=seq).count()
    return anchor().append("audit", {"seq": seq, "head": digest, "count": count})


def write_checkpoint_quietly() -> None:
    """The periodic checkpoint: a failure to write it is logged, never raised into the
    audited action (``audit verify`` reports a checkpoint file that stopped growing)."""
    try:
        write_checkpoint()
    except Exception:
        logger.exception("could not write an audit checkpoint")


def latest_checkpoint() -> dict[str, Any] | None:
    return anchor().latest("audit")


def read() -> AnchorState:
    return anchor().read()


def check(state: AnchorState, count: int, last_seq: int, digests: dict[int, str]) -> list[str]:
    """What the chain (``count`` entries ending at ``last_seq``; ``digests``: the digest of
    every entry at a checkpointed seq) contradicts in the signed checkpoints."""
    problems = list(state.problems)
    latest = state.latest("audit")
    if latest is None:
        return problems
    seq, at = int(latest["seq"]), latest["at"]
    if count == 0 and seq > 0:
        problems.append(
            f"the audit log is empty but a signed checkpoint of {at} recorded {seq} entries "
            "(wiped, its head reset)"
        )
        return problems
    if last_seq < seq:
        problems.append(
            f"the chain ends at entry {last_seq} but a signed checkpoint of {at} recorded "
            f"entry {seq} (truncated, or its head rewound)"
        )
    if count < int(latest.get("count", 0)):
        problems.append(
            f"the chain has {count} entries but a signed checkpoint of {at} counted "
            f"{latest['count']} (entries deleted)"
        )
    for record in state.records:
        if record.get("kind") != "audit":
            continue
        at_seq = int(record["seq"])
        if 0 < at_seq <= last_seq and digests.get(at_seq) != record["head"]:
            problems.append(
                f"entry {at_seq} is not the one a signed checkpoint of {record['at']} recorded "
                "(the chain was rewritten, or its head reset)"
            )
    return problems
