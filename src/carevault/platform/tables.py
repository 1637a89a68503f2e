"""Plain-text tables for people: the reports of the benchmarks and of security training."""

from __future__ import annotations


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """``headers`` and ``rows`` as left-aligned columns, with a dashed rule under the header."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)
