"""The audit log's batches, anchored outside the database in signed checkpoints.

API (for ``carevault audit``, the backup command and the sealer):

* :func:`append_batch` -- sign and append one sealed batch (``batch``: its number, ``hash``,
  ``seq``: the highest seq sealed so far, ``count``: the entries sealed so far), kind
  :data:`BATCH`; the sealer (:mod:`carevault.web.audit.sealing`) writes one per batch, after
  the batch commits, and repairs a missing one on its next run;
* :func:`batch_records` -- the verified batch records of a read;
* :func:`checkpoint_file` -- where the checkpoints are: ``DATA_DIR/`` +
  :data:`carevault.modelstore.anchor.CHECKPOINTS` (setting ``AUDIT_ANCHOR_DIR``, the data
  directory unless a test points it elsewhere; it holds the anchor key too);
* :func:`check` -- the problems a walk of the legacy chain shows against the checkpoints of
  kind ``audit`` that the chained log wrote before batches (the legacy range, batch 0).

The file format and signing are in :mod:`carevault.modelstore.anchor`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings

from carevault.modelstore.anchor import Anchor, AnchorState, checkpoints_path

from . import keys

# The kind of a batch's record (the legacy chain's head records were of kind "audit").
BATCH = "audit-batch"

logger = logging.getLogger(__name__)


def checkpoint_file() -> Path:
    return checkpoints_path(settings.AUDIT_ANCHOR_DIR)


def anchor() -> Anchor:
    return Anchor(settings.AUDIT_ANCHOR_DIR, keys.keys().master())


def append_batch(body: dict[str, Any]) -> dict[str, Any]:
    """Sign and append one batch's record; the record as written."""
    return anchor().append(BATCH, body)


def batch_records(state: AnchorState) -> list[dict[str, Any]]:
    return [r for r in state.records if r.get("kind") == BATCH]


def latest_batch(state: AnchorState) -> dict[str, Any] | None:
    records = batch_records(state)
    return max(records, key=lambda r: int(r["batch"])) if records else None


def latest_checkpoint() -> dict[str, Any] | None:
    """The newest anchored batch."""
    return latest_batch(read())


def read() -> AnchorState:
    return anchor().read()


def check(state: AnchorState, count: int, last_seq: int, digests: dict[int, str]) -> list[str]:
    """What the log (``count`` entries ending at ``last_seq``; ``digests``: the digest of every
    legacy entry at a checkpointed seq) contradicts in the legacy chain's signed checkpoints."""
    problems: list[str] = []
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
