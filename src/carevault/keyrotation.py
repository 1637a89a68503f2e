"""``carevault keys rotate``, safe to kill at any instant and to run again (issue 13).

The steps, each leaving a state the next run finishes:

1. The target version is written down (``<master file>.rotation``) before anything changes.
2. The master key file gains that version (an atomic write: the old file or the new one).
3. Every wrapped secret (patients' keyrings, service secrets, signing and TOTP keys, the sealed
   models' keys, the encrypted outbox's messages) is rewrapped under it, each by compare-and-swap
   of its own blob: a kill leaves every blob under either the old version or the new one, both in
   the master key file.
4. Only when every blob is under the target is the note removed.

A run that finds the note finishes *that* version instead of adding another; running app servers
see the new master file at their next look (:func:`carevault.web.vault.service.master`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carevault import faults
from carevault.crypto import FileMasterKeyProvider, MasterKey, RewrapReport, rewrap_all
from carevault.crypto.kek import WrappedKeyStore
from carevault.platform.files import atomic_write_bytes

PASSES = 3


def note_path(provider: FileMasterKeyProvider) -> Path:
    return provider.path.with_name(provider.path.name + ".rotation")


def pending_target(provider: FileMasterKeyProvider) -> int | None:
    """The version an interrupted rotation was making, if any."""
    try:
        doc = json.loads(note_path(provider).read_text(encoding="utf-8"))
        return int(doc["target_version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _FaultingStore:
    """A store whose every swap is a kill point (before and after it)."""

    def __init__(self, store: WrappedKeyStore, label: str) -> None:
        self.store = store
        self.label = label

    def names(self) -> Iterable[str]:
        return self.store.names()

    def context(self, name: str) -> Any:
        return self.store.context(name)

    def get(self, name: str) -> bytes:
        return self.store.get(name)

    def compare_and_swap(self, name: str, expected: bytes, new: bytes) -> bool:
        faults.point(f"rotate.{self.label}.before-swap")
        swapped = self.store.compare_and_swap(name, expected, new)
        faults.point(f"rotate.{self.label}.after-swap")
        return swapped


@dataclass
class Rotation:
    master_version: int
    resumed: bool
    report: RewrapReport = field(default_factory=RewrapReport)


def rotate(provider: FileMasterKeyProvider, stores: list[tuple[str, WrappedKeyStore]]) -> Rotation:
    """Rotate the master key (or finish the interrupted rotation) and rewrap everything."""
    master = provider.load()
    current = master.keyring.primary.version
    target = pending_target(provider)
    resumed = target is not None and target >= current
    if target is None or target < current:
        # A note naming an older version than the file holds is left from a finished run.
        target = current + 1
        atomic_write_bytes(
            note_path(provider),
            json.dumps({"target_version": target, "from_version": current}).encode(),
        )
        faults.point("rotate.noted")
    if current < target:
        master = _rotated_to(master, target)
        # Persisted before anything is wrapped with it: a blob never exists under a version
        # the file does not hold.
        provider.save(master)
        faults.point("rotate.master-saved")
    report = last = _rewrap_pass(master, stores)
    for _ in range(PASSES - 1):
        if not last.rewrapped and not last.changed_meanwhile:
            break
        # A server that wrapped a key just before it saw the new master file (or changed one
        # while we swapped it) left it under the old version: another pass catches it.
        last = _rewrap_pass(master, stores)
        report.rewrapped += last.rewrapped
        report.failed, report.changed_meanwhile = last.failed, last.changed_meanwhile
    if report.complete:
        note_path(provider).unlink(missing_ok=True)
    return Rotation(master_version=master.keyring.primary.version, resumed=resumed, report=report)


def _rewrap_pass(master: MasterKey, stores: list[tuple[str, WrappedKeyStore]]) -> RewrapReport:
    report = RewrapReport()
    for label, store in stores:
        part = rewrap_all(_FaultingStore(store, label), master)
        report.rewrapped += part.rewrapped
        report.already_current += part.already_current
        report.failed += part.failed
        report.changed_meanwhile += part.changed_meanwhile
    return report


def _rotated_to(master: MasterKey, target: int) -> MasterKey:
    while master.keyring.primary.version < target:
        master.rotate()
    return master
