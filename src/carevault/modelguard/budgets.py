"""Per-client query budgets for the diagnosis service: sliding hourly and daily windows.

A refused query is not counted, so a client that is refused changes nothing and can retry once
the window has moved on; the refusal says which window is full and when it frees up.

The charges live in a :class:`BudgetStore`: this process's memory by default (a library user
with one process), or a store every worker shares (the web layer's, on its shared cache), so
that a budget of 20 an hour is 20 whatever the number of processes.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class BudgetExceeded(Exception):
    """A client has used its queries for a window."""

    def __init__(self, client_id: str, window: str, limit: int, retry_after: timedelta) -> None:
        self.client_id = client_id
        self.window = window
        self.limit = limit
        self.retry_after = retry_after
        seconds = int(retry_after.total_seconds()) + 1
        super().__init__(
            f"query budget exhausted for client {client_id!r}: {limit} queries per {window}; "
            f"retry in {seconds} s"
        )


@dataclass(frozen=True)
class BudgetLimits:
    # A busy clinician diagnoses a few dozen cases a day; these leave ample room for that.
    per_hour: int = 40
    per_day: int = 200

    def __post_init__(self) -> None:
        if self.per_hour < 1 or self.per_day < 1:
            raise ValueError("query budgets must allow at least one query")
        if self.per_hour > self.per_day:
            raise ValueError("the hourly budget cannot exceed the daily budget")


@dataclass(frozen=True)
class Charge:
    client_id: str
    used_hour: int
    used_day: int


# A client's charges: [seconds since the epoch, queries] pairs, oldest first (JSON-friendly, so
# a shared store can keep them as they are; a batch is one pair, not one entry per query).
Entries = list[list[float]]
_T = TypeVar("_T")


class BudgetStore(Protocol):
    """Where budgets keep their charges. ``update`` runs ``change`` on a key's entries and
    stores what it returns, atomically with respect to every other user of the store (other
    threads, other processes when the store is shared); if ``change`` raises, nothing is
    stored. The web layer shares one store among its workers (web/diagnosis/shared_stores.py)."""

    def update(self, key: str, change: Callable[[Entries], tuple[Entries, _T]]) -> _T: ...

    def read(self, key: str) -> Entries: ...


class MemoryBudgetStore:
    """The default: one process's memory, guarded by a lock."""

    def __init__(self) -> None:
        self._data: dict[str, Entries] = {}
        self._lock = threading.Lock()

    def update(self, key: str, change: Callable[[Entries], tuple[Entries, _T]]) -> _T:
        with self._lock:
            entries, result = change([list(e) for e in self._data.get(key, [])])
            if entries:
                self._data[key] = entries
            else:
                self._data.pop(key, None)
            return result

    def read(self, key: str) -> Entries:
        with self._lock:
            return [list(e) for e in self._data.get(key, [])]


class QueryBudget:
    """``store``: where the charges live (default: this process's memory). ``name`` keeps
    several budgets in one store apart. ``tolerance``: how far back in time a charge may be
    and still be accepted (kept in order): workers sharing a store read the clock before
    taking the store's lock, so their charges arrive a few milliseconds out of order."""

    def __init__(
        self,
        limits: BudgetLimits | None = None,
        store: BudgetStore | None = None,
        *,
        name: str = "budget",
        tolerance: timedelta = timedelta(0),
    ) -> None:
        self.limits = limits or BudgetLimits()
        self.store: BudgetStore = store if store is not None else MemoryBudgetStore()
        self.name = name
        self.tolerance = tolerance.total_seconds()

    def _key(self, client_id: str) -> str:
        return f"{self.name}:{client_id}"

    def charge(self, client_id: str, now: datetime, count: int = 1) -> Charge:
        """Count ``count`` queries for ``client_id`` at ``now``, or raise
        :class:`BudgetExceeded` (all or nothing: a refused batch charges nothing)."""
        if not isinstance(client_id, str) or not client_id.strip():
            raise ValueError("client id must be a non-empty string")
        if now.tzinfo is None:
            raise ValueError("time must be timezone-aware")
        if count < 1:
            raise ValueError("a charge counts at least one query")
        at = now.timestamp()
        hour, day = HOUR.total_seconds(), DAY.total_seconds()
        limits = self.limits

        def change(entries: Entries) -> tuple[Entries, Charge]:
            kept = [e for e in entries if at - e[0] < day]
            if kept and at < kept[-1][0] - self.tolerance:
                raise ValueError("query times must not go backwards")
            in_hour = [e for e in kept if at - e[0] < hour]
            used_hour = int(sum(e[1] for e in in_hour))
            used_day = int(sum(e[1] for e in kept))
            if used_hour + count > limits.per_hour:
                wait = in_hour[0][0] + hour - at if in_hour and count <= limits.per_hour else hour
                raise BudgetExceeded(
                    client_id, "hour", limits.per_hour, timedelta(seconds=max(0.0, wait))
                )
            if used_day + count > limits.per_day:
                wait = kept[0][0] + day - at if kept and count <= limits.per_day else day
                raise BudgetExceeded(
                    client_id, "day", limits.per_day, timedelta(seconds=max(0.0, wait))
                )
            bisect.insort(kept, [at, float(count)], key=lambda e: e[0])
            return kept, Charge(client_id, used_hour + count, used_day + count)

        return self.store.update(self._key(client_id), change)

    def used(self, client_id: str, now: datetime) -> int:
        at = now.timestamp()
        day = DAY.total_seconds()
        return int(sum(e[1] for e in self.store.read(self._key(client_id)) if at - e[0] < day))
