"""Reading whether, when and how hard the AI layer answered a scenario, from the server's own
record (`carevault security activity --json`)."""

from __future__ import annotations

import datetime as dt

from carevault.attacklab.observe import attribute, timeline

T0 = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC).timestamp()


def at(seconds: float) -> str:
    return dt.datetime.fromtimestamp(T0 + seconds, tz=dt.UTC).isoformat()


def event(seconds, address, *, actor="", incident=None, risk=0.1):
    return {
        "at": at(seconds),
        "kind": "login_failure",
        "address": address,
        "actor": actor,
        "outcome": "failure",
        "risk": risk,
        "level": 0,
        "incident": incident,
    }


def incident(number, opened, *, level=1, responses=()):
    return {
        "id": number,
        "opened": at(opened),
        "updated": at(opened),
        "level_value": level,
        "level": "step-up",
        "responses": list(responses),
    }


def attribute_run(activity, *, times, honest_addresses=frozenset(), honest_accounts=frozenset()):
    return attribute(
        activity,
        started=T0,
        ended=T0 + 30,
        attack_times=[T0 + t for t in times],
        addresses={"198.18.1.1"},
        accounts={"doctor2"},
        honest_addresses=set(honest_addresses),
        honest_accounts=set(honest_accounts),
    )


def test_it_says_after_how_many_attack_requests_the_first_incident_opened():
    activity = {
        "events": [
            event(1, "198.18.1.1"),
            event(5, "198.18.1.1", incident=9, risk=0.8),
            event(6, "10.0.0.9", incident=10),
        ],
        "incidents": [incident(9, 5, level=3), incident(10, 40)],
    }
    seen = attribute_run(activity, times=[0.5, 1, 2, 3, 4, 4.9, 6, 7])
    assert seen.detected
    assert [i["id"] for i in seen.incidents] == [9]
    assert seen.first_incident_after == 6
    assert seen.level == "suspend"
    assert seen.scored_max_risk == 0.8


def test_events_about_an_attacked_account_count_even_from_other_addresses():
    activity = {"events": [event(2, "203.0.113.5", actor="doctor2", incident=4)], "incidents": []}
    activity["incidents"].append(incident(4, 1))
    seen = attribute_run(activity, times=[1, 2])
    assert seen.events == 1
    assert seen.detected


def test_no_incident_is_a_miss_not_a_guess():
    seen = attribute_run({"events": [event(1, "198.18.1.1")], "incidents": []}, times=[1])
    assert seen.observed
    assert not seen.detected
    assert seen.first_incident_after is None


def test_a_response_against_an_honest_user_is_reported():
    harmful = {"at": at(3), "action": "suspend_account", "target": "nurse1", "level": 3}
    activity = {"events": [], "incidents": [incident(1, 2, responses=[harmful])]}
    seen = attribute_run(activity, times=[], honest_accounts={"nurse1"})
    assert seen.honest_harmed == [harmful]


def test_without_the_servers_record_nothing_is_claimed():
    seen = attribute_run(None, times=[1])
    assert not seen.observed
    assert not seen.detected


def test_the_timeline_keeps_scored_events_and_thins_long_runs():
    events = [event(n, "198.18.1.1") for n in range(100)] + [event(1, "x", risk=None)]
    points = timeline({"events": events}, limit=10)["events"]
    assert len(points) == 10
    assert points[0] == [round(T0, 3), 0.1]
