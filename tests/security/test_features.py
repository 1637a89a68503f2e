"""Feature extraction: the right features move for each attack, rows match, memory stays bounded."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

import carevault.security.features as features_module
from carevault.security.events import AttackClass, Event, EventKind
from carevault.security.features import (
    COUNT_FEATURES,
    FEATURE_NAMES,
    FeatureExtractor,
    explain,
)
from carevault.security.simulate import DEFAULT_START, generate

T0 = DEFAULT_START + 10 * 3_600.0  # 10:00 on a Monday
DOCTOR = {
    "actor": "dr.who",
    "role": "doctor",
    "address": "81.2.3.4",
    "network": "81.2.0.0/16",
    "client": "browser-a",
    "rtt_ms": 20.0,
}


def at(event: Event, name: str) -> float:
    return float(FeatureExtractor().transform([event])[0][FEATURE_NAMES.index(name)])


def value(vector: np.ndarray, name: str) -> float:  # type: ignore[type-arg]
    return float(vector[FEATURE_NAMES.index(name)])


def login(t: float, session: str = "s1", **kw: object) -> Event:
    fields = {**DOCTOR, **kw}
    return Event(t, EventKind.LOGIN_SUCCESS, session=session, **fields)  # type: ignore[arg-type]


def read(t: float, session: str = "s1", records: int = 1, **kw: object) -> Event:
    fields = {**DOCTOR, **kw}
    return Event(t, EventKind.PHI_READ, session=session, records=records, **fields)  # type: ignore[arg-type]


def doctor_history(days: int = 5) -> list[Event]:
    """A doctor who logs in at 08:00 and reads two records a minute until noon."""
    events = []
    for d in range(days):
        start = DEFAULT_START + d * 86_400 + 8 * 3_600
        sid = f"day{d}"
        events.append(login(start, sid))
        events += [read(start + 30.0 * (i + 1), sid) for i in range(480)]
    return events


@pytest.fixture(scope="module")
def trained() -> FeatureExtractor:
    fx = FeatureExtractor()
    fx.transform(doctor_history())
    return fx


def test_feature_names_are_unique_and_each_is_documented() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert set(FEATURE_NAMES) >= COUNT_FEATURES
    doc = features_module.__doc__ or ""
    for name in FEATURE_NAMES:
        if not name.startswith(("kind_", "role_")):
            assert name in doc, name
    assert all(f"kind_{k.value}" in FEATURE_NAMES for k in EventKind)


def test_vectors_are_finite_float64_of_the_right_length() -> None:
    events = generate(2, days=1.0, users=20)
    fx = FeatureExtractor()
    one = fx.transform_one(events[0])
    assert one.dtype == np.float64
    assert one.shape == (len(FEATURE_NAMES),)
    matrix = FeatureExtractor().transform(events)
    assert matrix.shape == (len(events), len(FEATURE_NAMES))
    assert np.isfinite(matrix).all()
    assert FeatureExtractor().transform([]).shape == (0, len(FEATURE_NAMES))


def test_a_brute_force_burst_raises_failures_per_account_and_address() -> None:
    fx = FeatureExtractor()
    attempts = [
        Event(T0 + i, EventKind.LOGIN_FAILURE, "dr.who", "doctor", "45.9.9.9", "45.9.0.0/16",
              "hydra", rtt_ms=150.0, outcome="failed")
        for i in range(10)
    ]  # fmt: skip
    rows = [fx.transform_one(e) for e in attempts]
    assert [value(r, "fail_account_1m") for r in rows] == list(range(1, 11))
    assert value(rows[-1], "fail_address_1m") == 10
    # A minute later the short window has emptied, the hour window remembers.
    later = fx.transform_one(replace(attempts[0], at=T0 + 200))
    assert value(later, "fail_account_1m") == 1
    assert value(later, "fail_account_1h") == 11


def test_spraying_counts_distinct_accounts_per_address() -> None:
    fx = FeatureExtractor()
    for i in range(30):
        row = fx.transform_one(
            Event(T0 + 2 * i, EventKind.LOGIN_FAILURE, f"user{i}", "", "45.9.9.9", "45.9.0.0/16",
                  "tool", outcome="failed")
        )  # fmt: skip
    assert value(row, "accounts_address_10m") == 30
    assert value(row, "fail_account_1m") == 1
    assert value(row, "role_unknown") == 1


def test_a_hijacked_session_flags_the_change_of_address_network_and_client(
    trained: FeatureExtractor,
) -> None:
    fx = trained
    fx.transform_one(login(T0 + 5 * 86_400, "victim"))
    mine = fx.transform_one(read(T0 + 5 * 86_400 + 60, "victim"))
    assert value(mine, "session_address_changed") == 0
    stolen = fx.transform_one(
        read(T0 + 5 * 86_400 + 120, "victim", address="185.1.2.3", network="185.1.0.0/16",
             client="curl", rtt_ms=180.0)
    )  # fmt: skip
    for name in ("session_address_changed", "session_network_changed", "session_client_changed"):
        assert value(stolen, name) == 1, name
    assert value(stolen, "new_client") == 1
    assert value(stolen, "new_network") == 1
    assert value(stolen, "rtt_dev") > 5


def test_known_clients_and_networks_come_from_logins(trained: FeatureExtractor) -> None:
    row = trained.transform_one(login(T0 + 6 * 86_400, "again"))
    assert value(row, "new_client") == 0
    assert value(row, "new_network") == 0
    assert value(row, "rtt_dev") < 2
    assert value(row, "hour_surprise") < 0  # 10:00 is a usual hour for this doctor
    night = trained.transform_one(read(T0 + 6 * 86_400 + 15 * 3_600, "again"))  # 01:00
    assert value(night, "hour_surprise") > 2


def test_scraping_raises_the_records_ratio(trained: FeatureExtractor) -> None:
    usual = trained.transform_one(read(T0 + 7 * 86_400, "scrape"))
    t = T0 + 7 * 86_400 + 3_600
    trained.transform_one(login(t, "scrape"))
    for i in range(300):
        row = trained.transform_one(read(t + 1 + 0.2 * i, "scrape", records=2))
    assert value(usual, "reads_ratio") < 2
    assert value(row, "reads_actor_1m") == 600
    assert value(row, "reads_ratio") > 50


def test_malformed_uploads_flag_type_mismatch_invalid_keys_and_suites() -> None:
    good = Event(T0, EventKind.UPLOAD, "lab.one", "labtech", "81.2.3.5", "81.2.0.0/16", "b",
                 upload_bytes=300_000, declared_type="application/pdf",
                 sniffed_type="application/pdf", suite_id=3, key_bytes=32)  # fmt: skip
    for name in ("type_mismatch", "key_invalid", "suite_invalid", "header_bad"):
        assert at(good, name) == 0, name
    assert at(good, "upload_log_bytes") == pytest.approx(np.log1p(300_000))
    bad = replace(good, sniffed_type="application/x-dosexec", key_bytes=7, suite_id=99,
                  header_ok=False, upload_bytes=6_000_000_000)  # fmt: skip
    for name in ("type_mismatch", "key_invalid", "suite_invalid", "header_bad"):
        assert at(bad, name) == 1, name
    assert at(replace(good, key_bytes=100), "key_invalid") == 1
    generic = replace(good, declared_type="application/octet-stream")
    assert at(generic, "type_mismatch") == 0.5


def test_tampering_counts_crypto_failures_and_flags_stored_data() -> None:
    fx = FeatureExtractor()
    for i in range(4):
        row = fx.transform_one(
            Event(T0 + i, EventKind.SIGNATURE_FAILURE, "lab.one", "labtech", outcome="failed")
        )
    assert value(row, "crypto_fail_actor_10m") == 4
    stored = Event(T0, EventKind.DECRYPTION_FAILURE, "dr.who", "doctor", stored_data=True)
    assert at(stored, "stored_data_failure") == 1


def test_probing_and_extraction_raise_their_counters() -> None:
    fx = FeatureExtractor()
    for i in range(50):
        denied = fx.transform_one(
            Event(T0 + i, EventKind.ACCESS_DENIED, "pt.x", "patient", "9.9.9.9", outcome="denied")
        )
    assert value(denied, "denied_actor_10m") == 50
    assert value(denied, "denied_address_10m") == 50
    for i in range(120):
        pred = fx.transform_one(
            Event(T0 + 100 + i * 0.25, EventKind.PREDICTION, "dr.who", "doctor", client="tool")
        )
    assert value(pred, "pred_actor_1m") == 120
    assert value(pred, "pred_client_1m") == 120


def host(t: float, cpu: float, net: float = 5.0, latency: float = 40.0) -> Event:
    return Event(t, EventKind.HOST, cpu=cpu, net_mbps=net, latency_ms=latency)


def test_a_host_flood_raises_cpu_network_and_latency_deviation() -> None:
    fx = FeatureExtractor()
    rng = np.random.default_rng(0)
    for m in range(240):
        calm = fx.transform_one(host(T0 + 60 * m, 0.2 + rng.normal(0, 0.02)))
    assert abs(value(calm, "cpu_dev")) < 3
    flood = [fx.transform_one(host(T0 + 60 * (240 + m), 0.97, 400.0, 900.0)) for m in range(20)]
    assert all(value(r, "cpu_dev") > 8 for r in flood)  # a long flood stays unusual
    assert all(value(r, "net_dev") > 2 and value(r, "latency_dev") > 1.5 for r in flood)
    request = fx.transform_one(read(T0 + 60 * 260, "any"))
    assert value(request, "cpu") == 0
    assert value(request, "cpu_dev") == 0


def test_transform_one_equals_the_rows_of_transform() -> None:
    events = generate(4, days=1.0, users=25)
    batch = FeatureExtractor().transform(events)
    fx = FeatureExtractor()
    single = np.vstack([fx.transform_one(e) for e in events])
    np.testing.assert_array_equal(single, batch)


def test_late_events_do_not_break_the_windows() -> None:
    fx = FeatureExtractor()
    fx.transform_one(read(T0 + 100, "s"))
    row = fx.transform_one(read(T0 + 50, "s"))  # arrived late from another worker
    assert np.isfinite(row).all()
    assert value(row, "rate_actor_1m") == 2


def test_extractor_memory_stays_bounded_over_a_long_stream() -> None:
    fx = FeatureExtractor(max_keys=2_000, max_profiles=500)
    sizes = []
    for i in range(60_000):
        # Every event a new account, address, session and client: the worst case for state.
        t = T0 + i * 0.05
        kind = EventKind.LOGIN_SUCCESS if i % 3 else EventKind.LOGIN_FAILURE
        fx.transform_one(
            Event(t, kind, f"user{i}", "patient", f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}",
                  f"n{i}", f"c{i}", f"s{i}", 30.0, "ok" if i % 3 else "failed")
        )  # fmt: skip
        if i % 5_000 == 4_999:
            sizes.append(fx.state_size())
    assert max(sizes) < 2 * 2_000 * 16 + 1_000
    assert len(fx._profiles) <= 2 * 500 + 2_000
    # Idle keys go: after a quiet day only long-term habits (capped) and the host remain.
    fx.transform_one(host(T0 + 5 * 86_400, 0.2))
    fx.transform_one(host(T0 + 5 * 86_400 + 600, 0.2))
    assert fx.state_size() <= 500 + 1 + 100


def test_explain_maps_names_to_values_and_ranks_what_stands_out() -> None:
    fx = FeatureExtractor()
    for i in range(8):
        row = fx.transform_one(
            Event(T0 + i, EventKind.LOGIN_FAILURE, "dr.who", "doctor", "45.9.9.9", outcome="failed")
        )
    full = explain(row)
    assert list(full) == list(FEATURE_NAMES)
    assert full["fail_account_1m"] == 8
    ranked = fx.explain(row)
    top = list(ranked)[:2]
    assert set(top) == {"fail_account_1m", "fail_address_1m"}
    assert "kind_login_failure" in ranked
    assert "kind_phi_read" not in ranked
    with pytest.raises(ValueError, match="features"):
        explain([1.0, 2.0])


def test_attack_features_stand_out_from_benign_traffic_of_the_same_clinic() -> None:
    events = generate(11, days=3.0, users=40)
    clean = generate(11, days=3.0, users=40, attacks=[])
    x, x_clean = FeatureExtractor().transform(events), FeatureExtractor().transform(clean)
    labels = np.array([e.label.value for e in events])
    is_host = np.array([e.kind is EventKind.HOST for e in events])
    clean_host = np.array([e.kind is EventKind.HOST for e in clean])
    signature = {
        AttackClass.BRUTE_FORCE: "fail_account_1m",
        AttackClass.CREDENTIAL_STUFFING: "fail_global_5m",
        AttackClass.PASSWORD_SPRAYING: "accounts_address_10m",
        AttackClass.LOW_AND_SLOW: "fail_account_1d",
        AttackClass.SESSION_HIJACK: "session_network_changed",
        AttackClass.RECORD_SCRAPING: "reads_ratio",
        AttackClass.PRIVILEGE_PROBING: "denied_actor_10m",
        AttackClass.TAMPERED_UPLOAD: "crypto_fail_actor_10m",
        AttackClass.MODEL_EXTRACTION: "pred_actor_1m",
        AttackClass.CPU_FLOOD: "cpu_dev",
        AttackClass.NETWORK_FLOOD: "latency_dev",
    }
    for attack, name in signature.items():
        j = FEATURE_NAMES.index(name)
        flood = attack in (AttackClass.CPU_FLOOD, AttackClass.NETWORK_FLOOD)
        mask = (labels == attack.value) & (is_host if flood else ~is_host)
        benign = x_clean[clean_host if flood else ~clean_host, j]
        assert np.median(x[mask, j]) > np.quantile(benign, 0.99), attack


def test_time_per_event_is_reported() -> None:
    events = generate(6, days=2.0, users=60)
    fx = FeatureExtractor()
    started = time.perf_counter()
    for e in events:
        fx.transform_one(e)
    one = (time.perf_counter() - started) / len(events)
    started = time.perf_counter()
    FeatureExtractor().transform(events)
    batch = (time.perf_counter() - started) / len(events)
    print(f"\ntransform_one {one * 1e6:.1f} us/event, transform {batch * 1e6:.1f} us/event")
    assert one < 1e-3
