"""The traffic generator: deterministic, labelled, plausible."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from carevault.crypto.suites import Suite
from carevault.security.events import AttackClass, Event, EventKind
from carevault.security.simulate import (
    ATTACK_CLASSES,
    DEFAULT_START,
    Traffic,
    generate,
    simulate,
)

DAYS = 3.0
USERS = 40


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return simulate(7, days=DAYS, users=USERS)


@pytest.fixture(scope="module")
def benign_only() -> list[Event]:
    return generate(7, days=DAYS, users=USERS, attacks=[])


def test_generation_is_deterministic_per_seed(traffic: Traffic) -> None:
    assert simulate(7, days=DAYS, users=USERS) == traffic


def test_different_seeds_give_different_users_addresses_and_clients(traffic: Traffic) -> None:
    other = generate(8, days=DAYS, users=USERS)
    for field in ("actor", "address", "client"):
        mine = {getattr(e, field) for e in traffic.events if e.label is AttackClass.BENIGN}
        theirs = {getattr(e, field) for e in other if e.label is AttackClass.BENIGN}
        mine.discard("")
        theirs.discard("")
        assert len(mine & theirs) < 0.1 * len(mine), field


def test_events_are_sorted_and_inside_the_period(traffic: Traffic) -> None:
    times = [e.at for e in traffic.events]
    assert times == sorted(times)
    assert times[0] >= DEFAULT_START
    assert times[-1] < DEFAULT_START + DAYS * 86_400


def test_every_attack_class_appears_with_its_label(traffic: Traffic) -> None:
    labels = Counter(e.label for e in traffic.events)
    for attack in ATTACK_CLASSES:
        assert labels[attack] >= 3, attack
    assert {ep.attack for ep in traffic.episodes} == set(ATTACK_CLASSES)


def test_episodes_point_at_their_own_events(traffic: Traffic) -> None:
    events = traffic.events
    covered = set()
    for ep in traffic.episodes:
        assert ep.indices
        assert all(events[i].label is ep.attack for i in ep.indices)
        assert events[ep.indices[0]].at == ep.start
        assert events[ep.indices[-1]].at == ep.end
        covered.update(ep.indices)
    attack_events = {i for i, e in enumerate(events) if e.label is not AttackClass.BENIGN}
    assert covered == attack_events


def test_benign_only_traffic_has_no_attack_labels(benign_only: list[Event]) -> None:
    assert {e.label for e in benign_only} == {AttackClass.BENIGN}


def test_benign_traffic_does_not_depend_on_the_injected_attacks(
    traffic: Traffic, benign_only: list[Event]
) -> None:
    # Floods take over host samples, so compare requests only.
    with_attacks = [
        e for e in traffic.events if e.label is AttackClass.BENIGN and e.kind is not EventKind.HOST
    ]
    alone = [e for e in benign_only if e.kind is not EventKind.HOST]
    assert with_attacks == alone


def test_only_the_requested_attacks_are_injected() -> None:
    events = generate(3, days=1.0, users=20, attacks=[AttackClass.BRUTE_FORCE], attack_rate=0.0)
    assert {e.label for e in events} == {AttackClass.BENIGN, AttackClass.BRUTE_FORCE}


def test_attack_rate_sets_the_number_of_episodes() -> None:
    few = simulate(3, days=4.0, users=20, attacks=[AttackClass.PRIVILEGE_PROBING], attack_rate=0)
    many = simulate(3, days=4.0, users=20, attacks=[AttackClass.PRIVILEGE_PROBING], attack_rate=5)
    assert len(few.episodes) == 1
    assert len(many.episodes) > 5


def test_benign_volumes_are_plausible(benign_only: list[Event]) -> None:
    kinds = Counter(e.kind for e in benign_only)
    roles = Counter(e.role for e in benign_only if e.kind is EventKind.LOGIN_SUCCESS)
    assert set(roles) == {"doctor", "patient", "labtech", "admin"}
    assert kinds[EventKind.HOST] == DAYS * 1440
    logins = kinds[EventKind.LOGIN_SUCCESS] + kinds[EventKind.LOGIN_FAILURE]
    assert 0 < kinds[EventKind.LOGIN_FAILURE] < 0.1 * logins
    assert kinds[EventKind.ACCESS_DENIED] < 0.01 * kinds[EventKind.PHI_READ]
    assert kinds[EventKind.PHI_READ] > kinds[EventKind.PHI_WRITE] > kinds[EventKind.PREDICTION]
    for bad in (EventKind.SIGNATURE_FAILURE, EventKind.PACKET_REJECTED):
        assert kinds[bad] < 5
    assert not any(e.stored_data for e in benign_only)


def test_doctors_work_by_day_and_patients_in_the_evening(benign_only: list[Event]) -> None:
    def hours(role: str) -> list[int]:
        return [
            datetime.fromtimestamp(e.at, UTC).hour
            for e in benign_only
            if e.role == role and e.kind is EventKind.PHI_READ
        ]

    doctors, patients = hours("doctor"), hours("patient")
    # most of the reading is by day; a night shift covers the rest
    assert sum(6 <= h < 20 for h in doctors) > 0.75 * len(doctors)
    assert sum(h >= 16 for h in patients) > 0.6 * len(patients)


def test_benign_uploads_are_well_formed(benign_only: list[Event]) -> None:
    suites = {s.suite_id: s.aes_key_bytes for s in Suite}
    uploads = [e for e in benign_only if e.kind is EventKind.UPLOAD]
    assert uploads
    for e in uploads:
        assert e.suite_id == 0 or suites[e.suite_id] == e.key_bytes
        assert 0 < e.upload_bytes < 500e6
    matching = sum(e.declared_type == e.sniffed_type for e in uploads)
    assert matching > 0.95 * len(uploads)
    assert sum(e.header_ok for e in uploads) > 0.99 * len(uploads)


def test_round_trip_times_follow_each_users_network(benign_only: list[Event]) -> None:
    by_place: dict[tuple[str, str], list[float]] = {}
    for e in benign_only:
        if e.actor and e.rtt_ms:
            by_place.setdefault((e.actor, e.network), []).append(e.rtt_ms)
    spreads = []
    for rtts in by_place.values():
        if len(rtts) > 20:
            rtts.sort()
            spreads.append(rtts[len(rtts) * 9 // 10] / rtts[len(rtts) // 10])
    assert spreads
    assert max(spreads) < 4.0


def test_benign_sign_in_mistakes_include_names_that_are_no_account(
    benign_only: list[Event],
) -> None:
    failures = [e for e in benign_only if e.kind is EventKind.LOGIN_FAILURE]
    unknown = [e for e in failures if not e.role]
    assert unknown, "mistyped usernames and e-mails typed as usernames"
    assert len(unknown) < len(failures) / 2  # most mistakes are wrong passwords


def test_the_clinic_has_a_night_shift_and_patients_share_carrier_addresses(
    benign_only: list[Event],
) -> None:
    def hour(e: Event) -> int:
        return datetime.fromtimestamp(e.at, UTC).hour

    staff_logins = [
        e
        for e in benign_only
        if e.kind is EventKind.LOGIN_SUCCESS and e.role in ("doctor", "labtech")
    ]
    assert any(hour(e) < 5 for e in staff_logins)
    patients_per_address = Counter()
    for address in {(e.address, e.actor) for e in benign_only if e.role == "patient"}:
        patients_per_address[address[0]] += 1
    assert max(patients_per_address.values()) >= 2


def test_doctors_open_their_rounds_list_and_labs_upload_in_batches(
    benign_only: list[Event],
) -> None:
    lists = [e for e in benign_only if e.role == "doctor" and e.records >= 20]
    assert lists
    uploads = sorted(e.at for e in benign_only if e.kind is EventKind.UPLOAD)
    assert uploads


def test_attacks_look_like_their_descriptions(traffic: Traffic) -> None:
    def of(attack: AttackClass) -> list[Event]:
        return [e for e in traffic.events if e.label is attack]

    brute = [e for e in of(AttackClass.BRUTE_FORCE) if e.kind is EventKind.LOGIN_FAILURE]
    assert len({e.address for e in brute}) <= len(traffic.episodes)
    stuffing = of(AttackClass.CREDENTIAL_STUFFING)
    assert len({e.address for e in stuffing}) > 20
    assert len({e.actor for e in stuffing}) > 50
    hijack = of(AttackClass.SESSION_HIJACK)
    assert all(e.session for e in hijack)
    assert not any(e.kind is EventKind.LOGIN_SUCCESS for e in hijack)
    probing = of(AttackClass.PRIVILEGE_PROBING)
    denied = sum(e.kind is EventKind.ACCESS_DENIED for e in probing)
    assert denied > 0.8 * len(probing)
    malformed = [e for e in of(AttackClass.MALFORMED_UPLOAD) if e.kind is EventKind.UPLOAD]
    assert malformed
    for e in malformed:
        assert (
            e.declared_type != e.sniffed_type
            or e.key_bytes not in (16, 24, 32)
            or e.suite_id not in {s.suite_id for s in Suite}
            or e.upload_bytes > 400e6
            or not e.header_ok
        )
    hosts = [e for e in of(AttackClass.CPU_FLOOD) if e.kind is EventKind.HOST]
    assert hosts
    assert min(e.cpu for e in hosts) > 0.85
    extraction = of(AttackClass.MODEL_EXTRACTION)
    assert sum(e.kind is EventKind.PREDICTION for e in extraction) > 0.9 * len(extraction)


def test_it_refuses_an_empty_period_or_population() -> None:
    with pytest.raises(ValueError, match="days"):
        generate(1, days=0, users=10)
    with pytest.raises(ValueError, match="users"):
        generate(1, days=1, users=0)


def test_generation_speed_is_reported() -> None:
    started = time.perf_counter()
    events = generate(5, days=7.0, users=100)
    elapsed = time.perf_counter() - started
    print(f"\ngenerated {len(events):,} events in {elapsed:.2f} s ({len(events) / elapsed:,.0f}/s)")
    assert len(events) > 50_000
