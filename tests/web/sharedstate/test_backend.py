"""The shared store on the database (SQLite here, PostgreSQL under ``make unit-pg``): every
operation the security state relies on, on the real table. Expiry is shown by moving a row's
``expires_at`` into the past, never by waiting."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
from django.db import connection

from carevault.web.sharedstate.backend import SharedStateCache
from carevault.web.sharedstate.models import SharedStateEntry

pytestmark = pytest.mark.django_db


def store(**options: Any) -> SharedStateCache:
    return SharedStateCache("", {"KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}", "OPTIONS": options})


def expire(cache: SharedStateCache, key: str) -> None:
    SharedStateEntry.objects.filter(key=cache.make_key(key)).update(expires_at=time.time() - 1)


def row(cache: SharedStateCache, key: str) -> SharedStateEntry:
    return SharedStateEntry.objects.get(key=cache.make_key(key))


def test_add_creates_an_entry_only_when_it_is_absent() -> None:
    cache = store()
    assert cache.add("k", {"first": True}, 60) is True
    assert cache.add("k", {"second": True}, 60) is False
    assert cache.get("k") == {"first": True}


def test_an_expired_entry_is_absent_and_can_be_added_again() -> None:
    cache = store()
    cache.add("k", 1, 60)
    expire(cache, "k")
    assert cache.get("k") is None
    assert not cache.has_key("k")
    assert cache.add("k", 2, 60) is True
    assert cache.get("k") == 2
    assert row(cache, "k").expires_at > time.time()


def test_incr_adds_in_place_and_keeps_the_expiry() -> None:
    cache = store()
    cache.add("n", 0, 600)
    expires = row(cache, "n").expires_at
    assert [cache.incr("n") for _ in range(5)] == [1, 2, 3, 4, 5]
    assert cache.incr("n", 10) == 15
    assert cache.get("n") == 15
    assert row(cache, "n").expires_at == expires


def test_incr_refuses_a_missing_or_expired_counter() -> None:
    cache = store()
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
    cache.set("n", 3, 60)
    expire(cache, "n")
    with pytest.raises(ValueError, match="not found"):
        cache.incr("n")


def test_incr_of_a_float_still_adds_and_of_a_mapping_fails() -> None:
    cache = store()
    cache.set("f", 1.5, 60)
    assert cache.incr("f") == 2.5
    cache.set("d", {"a": 1}, 60)
    with pytest.raises(TypeError):
        cache.incr("d")


def test_delete_tells_exactly_one_caller_that_it_deleted() -> None:
    cache = store()
    cache.set("challenge", {"nonce": "x"}, 60)
    assert cache.delete("challenge") is True
    assert cache.delete("challenge") is False
    assert cache.get("challenge") is None


def test_deleting_an_expired_entry_reports_nothing_deleted() -> None:
    cache = store()
    cache.set("challenge", 1, 60)
    expire(cache, "challenge")
    assert cache.delete("challenge") is False


def test_values_are_stored_as_json_never_pickled() -> None:
    cache = store()
    cache.set("v", {"until": 1.5, "reason": "ünïcode", "n": [1, 2]}, 60)
    assert json.loads(row(cache, "v").value) == {"until": 1.5, "reason": "ünïcode", "n": [1, 2]}
    with pytest.raises(TypeError):
        cache.set("object", object(), 60)


def test_the_many_operations_and_touch() -> None:
    cache = store()
    cache.set_many({"a": 1, "b": "two", "c": None}, 60)
    assert cache.get_many(["a", "b", "missing"]) == {"a": 1, "b": "two"}
    assert cache.has_key("c")  # None is a value like any other
    cache.delete_many(["a", "b"])
    assert cache.get_many(["a", "b"]) == {}
    assert cache.touch("c", None) is True
    assert row(cache, "c").expires_at is None
    assert cache.touch("missing", 60) is False


def test_set_replaces_value_and_expiry_and_timeout_zero_means_gone() -> None:
    cache = store()
    cache.set("k", 1, 60)
    cache.set("k", 2, None)
    assert cache.get("k") == 2
    assert row(cache, "k").expires_at is None
    cache.set("k", 3, 0)
    assert cache.get("k") is None


def test_clear_deletes_only_its_own_prefix() -> None:
    mine, theirs = store(), store()
    mine.set("k", 1, 60)
    theirs.set("k", 2, 60)
    mine.clear()
    assert mine.get("k") is None
    assert theirs.get("k") == 2


def test_a_cull_deletes_expired_rows_a_bounded_batch_at_a_time() -> None:
    cache = store(CULL_EVERY=1_000_000, CULL_LIMIT=4)
    for n in range(6):
        cache.set(f"old{n}", n, 60)
        expire(cache, f"old{n}")
    cache.set("live", 1, 60)
    assert [cache.cull(), cache.cull(), cache.cull()] == [4, 2, 0]
    assert cache.get("live") == 1


def test_writes_cull_expired_rows_by_themselves() -> None:
    cache = store(CULL_EVERY=2)
    SharedStateEntry.objects.bulk_create(
        SharedStateEntry(key=cache.make_key(f"old{n}"), value="1", expires_at=time.time() - 1)
        for n in range(3)
    )
    cache.set("a", 1, 60)
    cache.set("b", 2, 60)
    assert sorted(
        SharedStateEntry.objects.filter(key__startswith=cache.key_prefix).values_list(
            "value", flat=True
        )
    ) == ["1", "2"]


def in_threads(count: int, work: Any) -> list[Any]:
    """Run ``work(n)`` in ``count`` threads at once, each on its own database connection (and
    so its own transactions, committed as it goes)."""
    from django.db import connections

    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(n: int) -> None:
        try:
            start.wait()
            results[n] = work(n)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent connections to one test database: PostgreSQL (make unit-pg); SQLite is "
    "raced by real processes in tests/web/test_multiprocess_security.py",
)
def test_concurrent_connections_count_add_and_delete_exactly_on_postgresql() -> None:
    cache = store()
    try:
        in_threads(1, lambda n: cache.set("n", 0, 600))
        in_threads(8, lambda n: [cache.incr("n") for _ in range(25)])
        assert in_threads(1, lambda n: cache.get("n")) == [200]
        assert sum(in_threads(8, lambda n: cache.add("once", n, 600))) == 1
        assert sum(in_threads(8, lambda n: cache.delete("once"))) == 1
    finally:
        in_threads(1, lambda n: cache.clear())
