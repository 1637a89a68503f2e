"""A scenario's limits and the two ways its context stops it.

They sit below both :mod:`.context` (which enforces them) and :mod:`.scenario` (which declares
them), so the scenario's declaration can name the context it runs with, and no import goes up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    """At most ``requests`` HTTP requests and ``seconds`` of wall time; the context refuses
    the request past either (:class:`BoundReached`), so no scenario can run away."""

    requests: int
    seconds: float

    def __post_init__(self) -> None:
        if self.requests < 0 or self.seconds <= 0:
            raise ValueError("bounds must be a non-negative request count and positive seconds")


class BoundReached(Exception):
    """The scenario used up its requests or its time."""


class Skip(Exception):
    """The scenario cannot run against this target (for example: no data directory given)."""
