"""What a scenario gets to attack with: clients that speak from addresses of their own and are
counted against the scenario's bounds, the demo credentials, and (in the lab, or with
``--data-dir``) the files an attacker who stole the data directory would hold and the server
to kill."""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .bounds import BoundReached, Bounds, Skip
from .lab import Files, LabServer
from .target import AttackClient

ADDRESSES_PER_SCENARIO = 2048


@dataclass
class Context:
    base_url: str
    bounds: Bounds
    index: int  # the scenario's place in the run: its addresses are 198.18.<index>.x
    quick: bool = False
    seed: int = 0
    passwords: Mapping[str, str] = field(default_factory=dict)
    files: Files | None = None
    server: LabServer | None = None
    observer: Any = None  # observe.Observer or None (no way to read the server's record)
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    attack_times: list[float] = field(default_factory=list)
    addresses: set[str] = field(default_factory=set)
    accounts: set[str] = field(default_factory=set)  # accounts the scenario attacked
    honest_addresses: set[str] = field(default_factory=set)
    honest_accounts: set[str] = field(default_factory=set)
    honest_requests: int = 0

    def __post_init__(self) -> None:
        # Attack choices, not secrets: reproducible from the seed.
        self.rng = random.Random(f"{self.seed}:{self.index}")  # noqa: S311

    # -- bounds -----------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def time_left(self) -> float:
        return max(0.0, self.bounds.seconds - self.elapsed())

    def requests_left(self) -> int:
        return max(0, self.bounds.requests - self.requests)

    def within_bounds(self, reserve: int = 0) -> bool:
        """True while at least ``reserve`` + 1 requests and some time remain."""
        return self.requests_left() > reserve and self.time_left() > 0

    def _count(self) -> None:
        if self.requests >= self.bounds.requests:
            raise BoundReached(f"request bound {self.bounds.requests} reached")
        if self.elapsed() > self.bounds.seconds:
            raise BoundReached(f"time bound {self.bounds.seconds:.0f} s reached")
        self.requests += 1
        self.attack_times.append(time.time())

    def _count_honest(self) -> None:
        self.honest_requests += 1

    # -- who attacks ------------------------------------------------------------------------------

    def address(self, n: int = 0) -> str:
        """This scenario's ``n``-th attacker address: each scenario owns 2,048 addresses of
        198.18.0.0/15 (the benchmarking range, never a real client), 64 scenarios before reuse."""
        if not 0 <= n < ADDRESSES_PER_SCENARIO:
            raise ValueError(f"address number out of range (0-{ADDRESSES_PER_SCENARIO - 1})")
        offset = (self.index % 64) * ADDRESSES_PER_SCENARIO + n
        return str(ipaddress.ip_address("198.18.0.0") + offset)

    def client(self, n: int = 0, *, address: str | None = None, **kwargs: Any) -> AttackClient:
        """An attacker's client, counted against the bounds."""
        where = address or self.address(n)
        self.addresses.add(where)
        return AttackClient(self.base_url, address=where, on_request=self._count, **kwargs)

    def honest_client(self, n: int = 0, **kwargs: Any) -> AttackClient:
        """An honest ward computer's client (10.77.<index>.n): not counted as attack traffic;
        the report checks that no response ever touched these addresses or their accounts."""
        where = f"10.77.{self.index % 256}.{n % 256}"
        self.honest_addresses.add(where)
        kwargs.setdefault("user_agent", "Mozilla/5.0 (ward workstation) carevault-lab-honest")
        return AttackClient(self.base_url, address=where, on_request=self._count_honest, **kwargs)

    def password(self, username: str) -> str:
        try:
            return self.passwords[username]
        except KeyError:
            raise Skip(f"no password for {username!r} (give the demo password)") from None

    def need_files(self) -> Files:
        if self.files is None:
            raise Skip("needs the target's data directory (the lab, or --data-dir)")
        return self.files

    def need_server(self) -> LabServer:
        if self.server is None:
            raise Skip("needs to kill and restart the server (the lab only)")
        return self.server

    def activity(self, since: float | None = None) -> dict[str, Any] | None:
        """The server's own record of events and incidents since ``since`` (epoch seconds;
        default: the scenario's start), or None when the lab cannot read it."""
        if self.observer is None:
            return None
        start = since if since is not None else time.time() - self.elapsed()
        result: dict[str, Any] = self.observer.activity(start)
        return result
