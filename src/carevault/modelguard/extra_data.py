"""New labelled rows for retraining the diagnosis models (``carevault model train
--extra-data FILE.csv``): strict reading, then the poison screen against the trusted rows.

The file is a CSV whose header is the 30 Wisconsin feature names (any order, each once) and a
``label`` column (1 = malignant, 0 = benign). Every cell must be a finite decimal number and
every label 0 or 1; the first problem found is reported with its line number and column name,
never with the cell's content (it is patient data), and nothing is trained on a file that has
one. The rows then go through :func:`carevault.modelguard.poisoning.screen` against the
training split, which the current models were trained on and which is trusted.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import dataset, poisoning

LABEL = "label"
# A clinic's retraining batch is hundreds of rows; this bounds memory and the screen's time.
MAX_BYTES = 16 * 1024 * 1024
MAX_ROWS = 100_000


class ExtraDataError(ValueError):
    """The extra-data file is not usable; the message says where (never what the cell held)."""


@dataclass(frozen=True)
class ExtraRows:
    X: NDArray[np.float64]
    y: NDArray[np.int64]
    source: str  # the file's name, for the report


def _number(text: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ExtraDataError(f"line {line}, column {column!r}: not a number") from None
    if not math.isfinite(value):
        raise ExtraDataError(f"line {line}, column {column!r}: not a finite number")
    return value


def read_csv(path: str | Path) -> ExtraRows:
    """The rows of ``path`` as features in the data set's order and labels (1 = malignant)."""
    source = Path(path)
    if source.stat().st_size > MAX_BYTES:
        raise ExtraDataError(f"{source.name} is larger than {MAX_BYTES // 2**20} MB")
    names = dataset.feature_names()
    # utf-8-sig: spreadsheets often start a CSV with a byte-order mark.
    with source.open(newline="", encoding="utf-8-sig") as handle:
        try:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if header is None:
                raise ExtraDataError(f"{source.name} is empty (expected a header line)")
            header = [h.strip() for h in header]
            _check_header(header, names)
            order = [header.index(name) for name in names]
            label_at = header.index(LABEL)
            rows: list[list[float]] = []
            labels: list[int] = []
            for fields in reader:
                line = reader.line_num
                if not fields:
                    continue  # a blank line, e.g. at the end of the file
                if len(fields) != len(header):
                    raise ExtraDataError(
                        f"line {line}: {len(fields)} fields, the header has {len(header)}"
                    )
                if len(rows) >= MAX_ROWS:
                    raise ExtraDataError(f"{source.name} has more than {MAX_ROWS} rows")
                values = [_number(fields[i].strip(), line, header[i]) for i in order]
                label = fields[label_at].strip()
                if label not in ("0", "1"):
                    raise ExtraDataError(
                        f"line {line}, column {LABEL!r}: must be 0 (benign) or 1 (malignant)"
                    )
                rows.append(values)
                labels.append(int(label))
        except csv.Error as exc:
            raise ExtraDataError(f"line {reader.line_num}: not valid CSV ({exc})") from None
        except UnicodeDecodeError:
            raise ExtraDataError(f"{source.name} is not UTF-8 text") from None
    if not rows:
        raise ExtraDataError(f"{source.name} has a header but no data rows")
    X = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
    return ExtraRows(X, np.array(labels, dtype=np.int64), source.name)


def _check_header(header: list[str], names: tuple[str, ...]) -> None:
    counts = Counter(header)
    repeated = sorted(name for name, n in counts.items() if n > 1)
    if repeated:
        raise ExtraDataError(f"line 1: repeated column(s) {repeated}")
    missing = [name for name in (*names, LABEL) if name not in counts]
    if missing:
        raise ExtraDataError(f"line 1: missing column(s) {missing}")
    unknown = sorted(set(header) - {*names, LABEL})
    if unknown:
        raise ExtraDataError(f"line 1: unknown column(s) {unknown}")


@dataclass(frozen=True)
class ScreenSummary:
    """What happened to the extra rows: which were kept, and how many each check dropped."""

    extra: ExtraRows
    kept: NDArray[np.bool_]
    screened: bool
    # Rows each check fired on; a row can fail several checks, so these may add up to more
    # than the rows dropped.
    by_check: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.extra.y)

    @property
    def kept_count(self) -> int:
        return int(self.kept.sum())

    @property
    def dropped(self) -> int:
        return self.rows - self.kept_count

    def kept_rows(self) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        return self.extra.X[self.kept], self.extra.y[self.kept]

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.extra.source,
            "rows": self.rows,
            "kept": self.kept_count,
            "dropped": self.dropped,
            "screened": self.screened,
            "dropped_by_check": dict(self.by_check),
        }


def screen(
    extra: ExtraRows,
    trusted: tuple[NDArray[np.float64], NDArray[np.int64]],
    *,
    enabled: bool = True,
) -> ScreenSummary:
    """Run the poison screen on ``extra`` against the trusted rows (or keep every row when
    ``enabled`` is False; the report then warns that nothing was screened)."""
    if not enabled:
        return ScreenSummary(extra, np.ones(len(extra.y), dtype=bool), False)
    report = poisoning.screen(extra.X, extra.y, trusted)
    by_check = dict.fromkeys(poisoning.CHECKS, 0)
    for reasons in report.reasons.values():
        for check in reasons:
            by_check[check] += 1
    return ScreenSummary(extra, report.kept, True, by_check)
