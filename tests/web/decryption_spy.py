"""Counting what a request decrypts: a spy on the vault's real decryption of a row's field
(``PhiRow.open_text``, which still runs), not a mock of its results."""

from __future__ import annotations

from collections import Counter
from unittest import mock

from carevault.web.vault import service


class DecryptionSpy:
    """Counts the real decryptions (``PhiRow.open_text``, which still runs) by table and row."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        real = service.PhiRow.open_text

        def spy(row: service.PhiRow, column: str, sealed: bytes) -> str:
            context = row._context
            self.calls[(context["table"], context["row"])] += 1
            return real(row, column, sealed)

        self._patch = mock.patch.object(service.PhiRow, "open_text", spy)

    def __enter__(self) -> DecryptionSpy:
        self._patch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._patch.stop()

    def rows(self, table: str) -> int:
        return len({row for t, row in self.calls if t == table})

    def total(self) -> int:
        return len(self.calls)


def spy_on_decryption() -> DecryptionSpy:
    return DecryptionSpy()
