"""The hard rules: each fires on the shape of its attack, stays quiet on the clinic's ordinary
traffic next to it, and pattern rules need the event's features to fire at all."""

from __future__ import annotations

import pytest

from carevault.security import rules
from carevault.security.events import Event, EventKind
from carevault.security.features import FEATURE_NAMES


def features(**values: float) -> rules.FeatureRow:
    row = [0.0] * len(FEATURE_NAMES)
    index = rules.feature_index()
    for name, value in values.items():
        row[index[name]] = value
    return rules.FeatureRow(row, index)


def fired(event: Event, **values: float) -> tuple[str, ...]:
    return rules.check(event, features=features(**values)).fired


def upload(**fields: object) -> Event:
    return Event(1.0, EventKind.UPLOAD, "lab.a", "labtech", "10.0.0.1", **fields)  # type: ignore[arg-type]


def test_a_tag_that_fails_on_stored_data_is_tampering_at_risk_one() -> None:
    event = Event(1.0, EventKind.DECRYPTION_FAILURE, stored_data=True)
    assert rules.check(event) == rules.RuleResult(("aead_failure_at_rest",), 1.0)


@pytest.mark.parametrize(
    ("event", "rule"),
    [
        (upload(suite_id=99, header_ok=True), "forged_ciphertext_header"),
        (upload(key_bytes=7), "forged_ciphertext_header"),
        (upload(header_ok=False), "broken_ciphertext_header"),
        (
            upload(declared_type="application/pdf", sniffed_type="text/html"),
            "dangerous_upload_content",
        ),
        (upload(upload_bytes=3_000_000_000), "oversized_upload"),
    ],
)
def test_a_malformed_upload_fires_its_rule_without_any_features(event: Event, rule: str) -> None:
    assert rule in rules.check(event).fired


def test_an_ordinary_upload_fires_nothing() -> None:
    event = upload(
        upload_bytes=250_000,
        declared_type="application/pdf",
        sniffed_type="application/pdf",
        suite_id=1,
        key_bytes=16,
    )
    assert rules.check(event, features=features(crypto_fail_actor_10m=0)) == rules.NOTHING


def test_pattern_rules_never_fire_without_the_events_features() -> None:
    event = Event(1.0, EventKind.PREDICTION, "dr.a", "doctor", "10.0.0.1", session="s")
    assert rules.check(event) == rules.NOTHING
    assert fired(event, pred_actor_1m=25) == ("prediction_sweep",)


def test_a_session_cookie_from_another_network_and_browser_is_a_stolen_one() -> None:
    event = Event(1.0, EventKind.PHI_READ, "dr.a", "doctor", "203.0.113.9", session="s")
    moved = {"session_network_changed": 1.0, "session_client_changed": 1.0}
    assert fired(event, **moved) == ("session_cookie_moved",)


def test_a_phone_moved_by_its_carriers_nat_keeps_its_session() -> None:
    event = Event(1.0, EventKind.PHI_READ, "pt.a", "patient", "100.65.0.9", session="s")
    assert fired(event, session_address_changed=1.0, session_network_changed=1.0) == ()


def test_records_read_at_a_machine_rate_are_a_sweep_and_a_ward_round_is_not() -> None:
    page = Event(1.0, EventKind.PHI_READ, "dr.a", "doctor", "10.0.0.1", session="s", records=25)
    assert fired(page, reads_actor_1m=rules.RECORDS_PER_MINUTE) == ("record_sweep",)
    assert fired(page, reads_actor_1m=60) == ()  # a round's list of fifty patients
    one = Event(1.0, EventKind.PHI_READ, "dr.a", "doctor", "10.0.0.1", session="s", records=1)
    stream = {"reads_actor_1m": 300, "rate_address_1m": rules.SWEEP_REQUESTS_PER_MINUTE}
    assert fired(one, **stream) == ("record_sweep",)


def test_the_owners_own_reading_is_not_a_sweep_while_a_thief_scrapes_the_account() -> None:
    one = Event(1.0, EventKind.PHI_READ, "dr.a", "doctor", "10.0.0.1", session="s", records=1)
    assert fired(one, reads_actor_1m=300, rate_address_1m=12) == ()
    ten = Event(1.0, EventKind.PHI_READ, "dr.a", "doctor", "10.0.0.1", session="s", records=10)
    assert fired(ten, reads_actor_1m=300, rate_address_1m=3) == ()


def test_a_run_of_denials_is_probing_and_one_old_link_is_not() -> None:
    event = Event(1.0, EventKind.ACCESS_DENIED, "pt.a", "patient", "10.0.0.1", outcome="denied")
    assert fired(event, denied_actor_10m=rules.DENIALS_PER_10_MINUTES) == ("denial_run",)
    assert fired(event, denied_actor_10m=1) == ()


def test_integrity_failures_on_submitted_data_fire_from_the_second_one() -> None:
    event = Event(1.0, EventKind.SIGNATURE_FAILURE, "lab.a", "labtech", outcome="failed")
    assert fired(event, crypto_fail_actor_10m=1) == ()
    assert fired(event, crypto_fail_actor_10m=2) == ("repeated_integrity_failures",)
    # the account owner's own reading meanwhile is not the evidence
    read = Event(1.0, EventKind.PHI_READ, "lab.a", "labtech", session="s", records=1)
    assert fired(read, crypto_fail_actor_10m=6) == ()


def test_failures_for_unknown_names_at_a_rate_no_person_types_are_stuffing() -> None:
    unknown = Event(1.0, EventKind.LOGIN_FAILURE, "?1f2e", "", "198.51.100.4", outcome="failed")
    flood = rules.UNKNOWN_NAME_FAILURES_PER_5_MINUTES
    assert fired(unknown, fail_global_5m=flood, fail_address_1h=3) == ("unknown_name_flood",)
    # the same rate, but the name is an account: a person's wrong password is not stuffing
    known = Event(1.0, EventKind.LOGIN_FAILURE, "dr.a", "doctor", "10.0.0.1", outcome="failed")
    assert fired(known, fail_global_5m=flood, fail_address_1h=3) == ()
    # an e-mail typed as a username on a quiet day, or as the first failure from its address
    # while a wave breaks elsewhere
    assert fired(unknown, fail_global_5m=2, fail_address_1h=1) == ()
    assert fired(unknown, fail_global_5m=flood, fail_address_1h=1) == ()


def test_failures_across_many_names_from_one_address_are_spraying_and_a_busy_ward_is_not() -> None:
    event = Event(1.0, EventKind.LOGIN_FAILURE, "dr.a", "doctor", "10.20.1.15", outcome="failed")
    spray = {
        "fail_address_1h": rules.ADDRESS_FAILURES_PER_HOUR,
        "accounts_address_10m": rules.ADDRESS_ACCOUNTS_PER_10_MINUTES,
    }
    assert fired(event, **spray) == ("address_spray",)
    # a ward PC: many colleagues sign in there, a handful of typos an hour
    assert fired(event, fail_address_1h=6, accounts_address_10m=8) == ()


def test_every_pattern_rule_stays_below_the_suspension_level() -> None:
    at_rest = {"aead_failure_at_rest", "signature_failure_at_rest"}
    assert all(r.risk < 0.85 for r in rules.RULES if r.name not in at_rest)


def test_ten_guesses_at_one_account_in_an_hour_alert_below_any_block() -> None:
    event = Event(1.0, EventKind.LOGIN_FAILURE, "dr.a", "doctor", "10.0.0.1", outcome="failed")
    assert fired(event, fail_account_1h=rules.ACCOUNT_FAILURES_PER_HOUR) == ("account_guessing",)
    assert fired(event, fail_account_1h=4) == ()  # a burst of typos after lunch
    # guesses spread over a day, one an hour from another proxy each time
    assert fired(event, fail_account_1h=2, fail_account_1d=12) == ("account_guessing",)
    assert rules.check(event, features=features(fail_account_1h=10)).floor < 0.7


def test_a_pinned_cpu_with_slow_requests_is_a_flood_and_the_nightly_backup_is_not() -> None:
    sample = Event(1.0, EventKind.HOST, cpu=0.95, latency_ms=900.0)
    assert fired(sample, latency_dev=2.0) == ("host_saturated",)
    backup = Event(1.0, EventKind.HOST, cpu=0.6, latency_ms=60.0)
    assert fired(backup, latency_dev=0.3) == ()
