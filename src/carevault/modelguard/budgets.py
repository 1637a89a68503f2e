"""Per-client query budgets for the diagnosis service: sliding hourly and daily windows.

A refused query is not counted, so a client that is refused changes nothing and can retry once
the window has moved on; the refusal says which window is full and when it frees up.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

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


class QueryBudget:
    def __init__(self, limits: BudgetLimits | None = None) -> None:
        self.limits = limits or BudgetLimits()
        self._times: dict[str, deque[datetime]] = {}

    def charge(self, client_id: str, now: datetime) -> Charge:
        """Count one query for ``client_id`` at ``now``, or raise :class:`BudgetExceeded`."""
        if not isinstance(client_id, str) or not client_id.strip():
            raise ValueError("client id must be a non-empty string")
        if now.tzinfo is None:
            raise ValueError("time must be timezone-aware")
        times = self._times.get(client_id, deque())
        while times and now - times[0] >= DAY:
            times.popleft()
        if times and now < times[-1]:
            raise ValueError("query times must not go backwards")
        in_hour = [t for t in times if now - t < HOUR]
        if len(in_hour) >= self.limits.per_hour:
            raise BudgetExceeded(client_id, "hour", self.limits.per_hour, in_hour[0] + HOUR - now)
        if len(times) >= self.limits.per_day:
            raise BudgetExceeded(client_id, "day", self.limits.per_day, times[0] + DAY - now)
        times.append(now)
        self._times[client_id] = times
        return Charge(client_id, len(in_hour) + 1, len(times))

    def used(self, client_id: str, now: datetime) -> int:
        return sum(1 for t in self._times.get(client_id, ()) if now - t < DAY)
