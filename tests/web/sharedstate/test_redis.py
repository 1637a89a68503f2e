"""The shared store on the real Redis (127.0.0.1:6379, database 15), each test under a key prefix
of its own: JSON instead of pickle, an increment that keeps the TTL and is exact from many
threads, delete-once, and a clear() that leaves other deployments' keys alone."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from carevault.web.sharedstate.redis import SharedRedisCache

REDIS_URL = os.environ.get("CAREVAULT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def raw() -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}); start redis-server")
    yield client
    client.close()


@pytest.fixture
def prefixes(raw: Any) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for prefix in made:
        keys = list(raw.scan_iter(match=f"{prefix}:*"))
        if keys:
            raw.delete(*keys)


@pytest.fixture
def store(prefixes: list[str]) -> Any:
    def make() -> SharedRedisCache:
        prefix = f"cvtest-{uuid.uuid4().hex[:12]}"
        prefixes.append(prefix)
        return SharedRedisCache(REDIS_URL, {"KEY_PREFIX": prefix})

    return make


def test_values_are_json_in_redis_and_integers_stay_raw(store: Any, raw: Any) -> None:
    cache = store()
    cache.set("block", {"until": 1.5, "reason": "ünï"}, 60)
    cache.set("n", 7, 60)
    cache.set("flag", True, 60)
    assert raw.get(cache.make_key("block")).decode() == '{"until":1.5,"reason":"ünï"}'
    assert raw.get(cache.make_key("n")) == b"7"
    assert cache.get_many(["block", "n", "flag"]) == {
        "block": {"until": 1.5, "reason": "ünï"},
        "n": 7,
        "flag": True,
    }


def test_a_pickled_value_planted_in_redis_is_never_unpickled(store: Any, raw: Any) -> None:
    cache = store()
    # A pickle (protocol 4) of a small dict, as Django's own Redis cache would have stored it.
    raw.set(
        cache.make_key("planted"),
        b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01x\x94K\x01s.",
    )
    with pytest.raises((UnicodeDecodeError, json.JSONDecodeError)):  # refused, never run
        cache.get("planted")


def test_incr_is_atomic_and_keeps_the_ttl(store: Any, raw: Any) -> None:
    cache = store()
    cache.add("n", 0, 600)
    assert cache.incr("n") == 1
    assert cache.incr("n", 5) == 6
    assert 0 < raw.ttl(cache.make_key("n")) <= 600
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
    assert raw.exists(cache.make_key("missing")) == 0  # no counter without an expiry


def test_concurrent_increments_all_count(store: Any) -> None:
    cache = store()
    cache.add("n", 0, 600)
    start = threading.Barrier(8)

    def hit() -> None:
        start.wait()
        for _ in range(50):
            cache.incr("n")

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("n") == 400


def test_add_and_delete_succeed_once(store: Any) -> None:
    cache = store()
    assert cache.add("k", 1, 60) is True
    assert cache.add("k", 2, 60) is False
    assert cache.delete("k") is True
    assert cache.delete("k") is False


def test_clear_deletes_only_this_deployments_keys(store: Any, raw: Any) -> None:
    mine, theirs = store(), store()
    for n in range(1200):  # more than one SCAN batch
        mine.set(f"k{n}", n, 60)
    theirs.set("k", "kept", 60)
    raw.set("someone-elses-key", b"1", ex=60)
    try:
        mine.clear()
        assert mine.get_many([f"k{n}" for n in range(1200)]) == {}
        assert theirs.get("k") == "kept"
        assert raw.get("someone-elses-key") == b"1"
    finally:
        raw.delete("someone-elses-key")
