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
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from carevault import config

DEFAULT_GRACE_SECONDS = 900.0
STORED_SUFFIX = ".cvs"


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
    from carevault.web.labs.models import LabFile

    report = SweepReport()
    cutoff = time.time() - older_than
    uploads = Path(settings.UPLOAD_DIR)
    if uploads.is_dir():
        # Files first, then the names the database holds: a file stored and committed between
        # the two looks referenced; one stored after both is younger than any sensible grace.
        on_disk = [p for p in uploads.iterdir() if p.name.endswith(STORED_SUFFIX)]
        named = set(LabFile.objects.values_list("storage_name", flat=True))
        report.referenced = len(named)
        for path in sorted(on_disk):
            if path.name not in named and _old_enough(path, cutoff):
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
