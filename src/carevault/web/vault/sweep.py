"""The sweep (issue 13): remove what an interrupted key job left behind and nothing else.

Key jobs write new before they remove old (a re-encrypted lab file gets a new name; the old one
goes only after the commit that stops naming it), so a kill at any instant leaves at worst:

* a stored lab file that no committed record names (the new file of a rolled-back batch, or the
  old file of a committed one whose removal never ran), and
* a half-written temporary file of an atomic write (``.<name>.<random>.part``).

Neither holds anything the committed state needs. A file younger than ``older_than`` seconds is
left alone: it may belong to an upload whose transaction has not committed yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from carevault import config

DEFAULT_GRACE_SECONDS = 900.0
STORED_SUFFIX = ".cvs"

# Who names stored files: each app that stores encrypted files in UPLOAD_DIR (labs: its lab
# files) registers the names its committed records hold, at AppConfig.ready(). The vault sits
# below those apps and does not import them. None registered: every stored file is referenced
# (the sweep then removes no stored file, never one a record needs).
_referenced: list[Callable[[], Iterable[str]]] = []


def register_stored_names(names: Callable[[], Iterable[str]]) -> None:
    if names not in _referenced:
        _referenced.append(names)


@dataclass
class SweepReport:
    orphan_files: list[str] = field(default_factory=list)
    partial_writes: list[str] = field(default_factory=list)
    referenced: int = 0

    @property
    def removed(self) -> int:
        return len(self.orphan_files) + len(self.partial_writes)


def _old_enough(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime <= cutoff
    except FileNotFoundError:
        return False


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(config.data_dir()))
    except ValueError:
        return str(path)


def _temp_dirs() -> list[Path]:
    data = config.data_dir()
    return [
        Path(settings.UPLOAD_DIR),
        Path(settings.EMAIL_OUTBOX_DIR),
        data / "keys",
        data / "keys" / "wrapped",
        data / "models" / "keys",
    ]


def sweep(*, older_than: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False) -> SweepReport:
    """Remove unreferenced stored files and leftovers of interrupted atomic writes."""
    report = SweepReport()
    cutoff = time.time() - older_than
    uploads = Path(settings.UPLOAD_DIR)
    if uploads.is_dir():
        # Files first, then the names the database holds: a file stored and committed between
        # the two looks referenced; one stored after both is younger than any sensible grace.
        on_disk = [p for p in uploads.iterdir() if p.name.endswith(STORED_SUFFIX)]
        named = {name for source in tuple(_referenced) for name in source()}
        report.referenced = len(named)
        for path in sorted(on_disk):
            if _referenced and path.name not in named and _old_enough(path, cutoff):
                report.orphan_files.append(path.name)
                if not dry_run:
                    path.unlink(missing_ok=True)
    for folder in _temp_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob(".*.part")):
            if _old_enough(path, cutoff):
                report.partial_writes.append(_shown(path))
                if not dry_run:
                    path.unlink(missing_ok=True)
    return report
