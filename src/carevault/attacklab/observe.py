"""Whether, when and how hard the AI layer answered: read from the server's own record.

The lab reads ``carevault security activity --since T --json`` on the lab's data directory (the
officer's command: the lab needs no sign-in and changes nothing by reading). A scenario's events
are those from its addresses or about the accounts it attacked; its incidents are those its
events were grouped into, and any incident opened while it ran. "Detected after N requests" is
the number of attack requests the scenario had sent when the first of those incidents opened
(same machine, same clock).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .lab import Files

LEVELS = ("observe", "step-up", "contain", "suspend", "rotate")  # security.response.Level


class Observer:
    def __init__(self, files: Files) -> None:
        self.files = files

    def activity(self, since: float) -> dict[str, Any]:
        when = dt.datetime.fromtimestamp(since - 1, tz=dt.UTC).isoformat()
        result: dict[str, Any] = self.files.cli_json("security", "activity", "--since", when)
        return result

    def restore(self) -> list[str]:
        """End every block and suspension in force (the lab's next scenario starts clean; the
        officer's command marks the evidence handled, as a real officer's would)."""
        status = self.files.cli_json("security", "status")
        done = []
        for block in status.get("blocked_addresses", []):
            self.files.cli("security", "unblock", block["address"])
            done.append(f"unblocked {block['address']}")
        for account in status.get("suspended_accounts", []):
            self.files.cli("security", "lift", account["username"])
            done.append(f"lifted {account['username']}")
        if status.get("floor"):
            self.files.cli("security", "lift-floor")
            done.append("lowered the floor")
        return done


def timeline(activity: dict[str, Any] | None, limit: int = 5_000) -> dict[str, Any]:
    """Every scored event of the run as ``[epoch seconds, risk]`` (evenly thinned to ``limit``
    points: the chart shows the shape, the JSON keeps the incidents)."""
    if activity is None:
        return {"events": []}
    points = [
        [round(_epoch(e["at"]), 3), float(e["risk"])]
        for e in activity.get("events", [])
        if e.get("risk") is not None
    ]
    if len(points) > limit:
        step = len(points) / limit
        points = [points[int(i * step)] for i in range(limit)]
    return {"events": points}


@dataclass
class Detection:
    observed: bool  # False: no way to read the server's record
    events: int = 0
    scored_max_risk: float = 0.0
    incidents: list[dict[str, Any]] = field(default_factory=list)
    first_incident_after: int | None = None  # attack requests sent before the first incident
    first_incident_seconds: float | None = None
    level: str = "none"
    responses: list[dict[str, Any]] = field(default_factory=list)
    # Responses that touched an honest address or account (must stay empty).
    honest_harmed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def detected(self) -> bool:
        return bool(self.incidents)


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def attribute(
    activity: dict[str, Any] | None,
    *,
    started: float,
    ended: float,
    attack_times: list[float],
    addresses: set[str],
    accounts: set[str],
    honest_addresses: set[str],
    honest_accounts: set[str],
) -> Detection:
    if activity is None:
        return Detection(observed=False)
    events = [
        e
        for e in activity.get("events", [])
        if started - 1 <= _epoch(e["at"]) <= ended + 1
        and (e["address"] in addresses or (e["actor"] and e["actor"] in accounts))
    ]
    incident_ids = {e["incident"] for e in events if e["incident"] is not None}
    chosen = [
        i
        for i in activity.get("incidents", [])
        if i["id"] in incident_ids or started - 1 <= _epoch(i["opened"]) <= ended + 1
    ]
    detection = Detection(
        observed=True,
        events=len(events),
        scored_max_risk=max((e["risk"] or 0.0 for e in events), default=0.0),
        incidents=chosen,
    )
    if chosen:
        # The first moment one of this scenario's incidents covered it: its opening, or the
        # first of the scenario's events grouped into an incident opened earlier.
        linked = [_epoch(e["at"]) for e in events if e["incident"] is not None]
        opened = [_epoch(i["opened"]) for i in chosen if _epoch(i["opened"]) >= started - 1]
        first = min(linked + opened) if linked + opened else started
        detection.first_incident_after = sum(1 for t in attack_times if t <= first + 0.001)
        detection.first_incident_seconds = round(max(0.0, first - started), 2)
        top = max(int(i.get("level_value", 0)) for i in chosen)
        detection.level = LEVELS[min(top, len(LEVELS) - 1)]
        detection.responses = [r for i in chosen for r in i["responses"]]
    for incident in activity.get("incidents", []):
        for response in incident["responses"]:
            honest = response["target"] in honest_addresses | honest_accounts
            if honest and started - 1 <= _epoch(response["at"]) <= ended + 1:
                detection.honest_harmed.append(response)
    return detection
