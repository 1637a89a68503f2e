"""Django's Redis cache, made fit for the security state every app server shares.

Three changes to ``django.core.cache.backends.redis.RedisCache``:

* **JSON, never pickle.** Django's serializer unpickles whatever it reads, so anyone who can
  write to the Redis could run code in every app server. Integers stay raw (so ``INCRBY``
  works on them); everything else is JSON.
* **An atomic incr that keeps the TTL.** Django checks ``EXISTS`` and then runs ``INCRBY``: if
  the key expires in between, ``INCRBY`` creates it at ``delta`` with no expiry, and a
  counter that should have lapsed lives for ever. Here one Lua script does both.
* **clear() deletes only this deployment's keys** (``SCAN`` over the key prefix), never
  ``FLUSHDB``: one Redis may serve other deployments or other programs.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

# Returns false (nil) when the key is absent, so the caller raises ValueError as Django does.
_INCR = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false
"""

_SCAN_BATCH = 500


class JsonSerializer:
    def dumps(self, obj: Any) -> bytes | int:
        # type(), not isinstance(): True is JSON "true", not the integer 1.
        if type(obj) is int:
            return obj
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(self, data: bytes | int) -> Any:
        if isinstance(data, int):
            return data
        try:
            return int(data)
        except ValueError:
            return json.loads(data)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class SharedRedisCacheClient(RedisCacheClient):
    def __init__(self, servers: list[str], key_prefix: str = "", **options: Any) -> None:
        options.setdefault("serializer", JsonSerializer)
        super().__init__(servers, **options)
        self._key_prefix = key_prefix

    def incr(self, key: str | bytes | memoryview, delta: int) -> int:
        client = self.get_client(key, write=True)
        value = client.eval(_INCR, 1, key, int(delta))
        if value is None:
            raise ValueError(f"Key '{key!r}' not found.")
        return int(value)

    def clear(self) -> bool:
        client = self.get_client(None, write=True)
        # Keys are "<KEY_PREFIX>:<version>:<key>"; SCAN walks them without blocking Redis.
        pattern = _glob_escape(f"{self._key_prefix}:") + "*"
        batch: list[Any] = []
        for key in client.scan_iter(match=pattern, count=_SCAN_BATCH):
            batch.append(key)
            if len(batch) >= _SCAN_BATCH:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
        return True


class SharedRedisCache(RedisCache):
    """``BACKEND: carevault.web.sharedstate.redis.SharedRedisCache``, ``LOCATION`` the Redis URL;
    give every deployment on one Redis its own ``KEY_PREFIX``."""

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedRedisCacheClient
        options: dict[str, Any] = dict(params.get("OPTIONS") or {})
        self._options = {**options, "key_prefix": self.key_prefix}
