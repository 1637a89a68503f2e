"""A Django cache on the application's own database, with operations that stay exact when
several processes (gunicorn workers, app servers on one database) use it at once.

Why not Django's ``DatabaseCache``: its ``add`` is a read then a write, its ``incr`` is a
``get`` plus a ``set`` (two workers counting the same failure both write "n + 1"), and it
pickles values. Here every operation the security state depends on is one SQL statement that
the database makes atomic:

* ``add``: revive an expired row (``UPDATE ... WHERE expires_at <= now``), else
  ``INSERT ... ON CONFLICT DO NOTHING``; of two callers exactly one is told True.
* ``incr``: one ``UPDATE ... SET value = value + d ... RETURNING value``; concurrent increments
  from any number of processes all count.
* ``delete``: one ``DELETE``; it returns True to exactly one caller, so a single-use challenge
  is consumed once.
* ``set``: one upsert (``INSERT ... ON CONFLICT DO UPDATE``).

The SQL is the subset SQLite (3.35+) and PostgreSQL share; another database falls back to a
locked read and write inside a transaction. Values are JSON, never pickle: whoever can write
this table must not be able to run code in the app. Expired rows are invisible at once and
deleted a bounded batch at a time every ``CULL_EVERY`` writes of the process, so the table
stays the size of what is live.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.db import connections, router, transaction

from .models import SharedStateEntry

# Writes (per process) between two culls, and the most rows one cull deletes: a cull is one
# indexed DELETE that never grows with the table.
CULL_EVERY = 100
CULL_LIMIT = 1000


def dumps(value: Any) -> str:
    """JSON for the table (TypeError for what JSON cannot hold: such a value is a bug)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> Any:
    return json.loads(text)


class SharedStateCache(BaseCache):
    """``BACKEND: carevault.web.sharedstate.backend.SharedStateCache``; ``LOCATION`` is unused
    (the table is ``sharedstate_entry`` in the database the router picks for the model).
    ``OPTIONS``: ``CULL_EVERY``, ``CULL_LIMIT``."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS") or {})
        self.cull_every = max(1, int(options.pop("CULL_EVERY", CULL_EVERY)))
        self.cull_limit = max(1, int(options.pop("CULL_LIMIT", CULL_LIMIT)))
        super().__init__({**params, "OPTIONS": options})
        self._writes = 0
        self._writes_lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def _db(self) -> str:
        return router.db_for_write(SharedStateEntry)

    def _sql(self) -> tuple[Any, str, str, str, str]:
        connection = connections[self._db]
        quote = connection.ops.quote_name
        return (
            connection,
            quote(SharedStateEntry._meta.db_table),
            quote("key"),
            quote("value"),
            quote("expires_at"),
        )

    def _expiry(self, timeout: Any) -> float | None:
        # None: never expires; 0 or less: already expired (Django's meaning of timeout=0).
        return self.get_backend_timeout(timeout)

    def _wrote(self, count: int = 1) -> None:
        with self._writes_lock:
            self._writes += count
            due = self._writes >= self.cull_every
            if due:
                self._writes = 0
        if due:
            self.cull()

    def cull(self) -> int:
        """Delete up to CULL_LIMIT expired rows; returns how many."""
        connection, table, key, _, expires = self._sql()
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} "  # noqa: S608
                f"WHERE {expires} IS NOT NULL AND {expires} <= %s LIMIT %s)",
                [time.time(), self.cull_limit],
            )
            return int(cursor.rowcount)

    def _live(self) -> Any:
        from django.db.models import Q

        return Q(expires_at__isnull=True) | Q(expires_at__gt=time.time())

    # -- the cache API ---------------------------------------------------------------------------

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        made = self.make_and_validate_key(key, version=version)
        text, expires, now = dumps(value), self._expiry(timeout), time.time()
        connection, table, k, v, e = self._sql()
        with connection.cursor() as cursor:
            # An expired entry counts as absent: revive it in place (one caller wins the row).
            cursor.execute(
                f"UPDATE {table} SET {v} = %s, {e} = %s "  # noqa: S608
                f"WHERE {k} = %s AND {e} IS NOT NULL AND {e} <= %s",
                [text, expires, made, now],
            )
            added = bool(cursor.rowcount == 1)
            if not added:
                cursor.execute(
                    f"INSERT INTO {table} ({k}, {v}, {e}) VALUES (%s, %s, %s) "  # noqa: S608
                    f"ON CONFLICT ({k}) DO NOTHING",
                    [made, text, expires],
                )
                added = bool(cursor.rowcount == 1)
        if added:
            self._wrote()
        return added

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        made = self.make_and_validate_key(key, version=version)
        text = (
            SharedStateEntry.objects.using(self._db)
            .filter(self._live(), key=made)
            .values_list("value", flat=True)
            .first()
        )
        return default if text is None else loads(text)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        self._upsert({self.make_and_validate_key(key, version=version): value}, timeout)

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        self._upsert(
            {self.make_and_validate_key(key, version=version): v for key, v in data.items()},
            timeout,
        )
        return []

    def _upsert(self, entries: Mapping[str, Any], timeout: Any) -> None:
        if not entries:
            return
        expires = self._expiry(timeout)
        rows = [(key, dumps(value), expires) for key, value in entries.items()]
        connection, table, k, v, e = self._sql()
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} ({k}, {v}, {e}) VALUES (%s, %s, %s) "  # noqa: S608
                f"ON CONFLICT ({k}) DO UPDATE SET {v} = excluded.{v}, {e} = excluded.{e}",
                rows,
            )
        self._wrote(len(rows))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        made = self.make_and_validate_key(key, version=version)
        updated = (
            SharedStateEntry.objects.using(self._db)
            .filter(self._live(), key=made)
            .update(expires_at=self._expiry(timeout))
        )
        return updated == 1

    def delete(self, key: Any, version: int | None = None) -> bool:
        """True for exactly one of several callers deleting the same live key."""
        made = self.make_and_validate_key(key, version=version)
        entries = SharedStateEntry.objects.using(self._db).filter(self._live(), key=made)
        deleted, _ = entries.delete()
        return deleted > 0

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        made = [self.make_and_validate_key(key, version=version) for key in keys]
        if made:
            SharedStateEntry.objects.using(self._db).filter(key__in=made).delete()

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        made = {self.make_and_validate_key(key, version=version): key for key in keys}
        if not made:
            return {}
        rows = (
            SharedStateEntry.objects.using(self._db)
            .filter(self._live(), key__in=list(made))
            .values_list("key", "value")
        )
        return {made[key]: loads(text) for key, text in rows}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        made = self.make_and_validate_key(key, version=version)
        return SharedStateEntry.objects.using(self._db).filter(self._live(), key=made).exists()

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Add ``delta`` in one statement (exact under any number of processes); ValueError when
        the key is absent or expired, as Django's caches do."""
        made = self.make_and_validate_key(key, version=version)
        connection, table, k, v, e = self._sql()
        if connection.vendor == "postgresql":
            value = f"CAST(CAST({v} AS BIGINT) + %s AS TEXT)"
            integral = f"{v} ~ '^-?[0-9]+$'"
        elif connection.vendor == "sqlite":
            value = f"CAST(CAST({v} AS INTEGER) + %s AS TEXT)"
            # An integer's JSON is its decimal text: the round trip holds for integers only.
            integral = f"CAST(CAST({v} AS INTEGER) AS TEXT) = {v}"
        else:  # pragma: no cover - neither SQLite nor PostgreSQL
            return self._incr_locked(made, delta)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {v} = {value} WHERE {k} = %s "  # noqa: S608
                f"AND ({e} IS NULL OR {e} > %s) AND {integral} RETURNING {v}",
                [int(delta), made, time.time()],
            )
            row = cursor.fetchone()
        if row is not None:
            return int(row[0])
        return self._incr_locked(made, delta)

    def _incr_locked(self, made: str, delta: int) -> int:
        """A value that is not an integer (a float), or another database: a locked read and
        write in one transaction."""
        with transaction.atomic(using=self._db):
            entry = (
                SharedStateEntry.objects.using(self._db)
                .select_for_update()
                .filter(self._live(), key=made)
                .first()
            )
            if entry is None:
                raise ValueError(f"Key '{made}' not found")
            new = loads(entry.value) + delta
            entry.value = dumps(new)
            entry.save(update_fields=["value"])
        return new  # type: ignore[no-any-return]

    def clear(self) -> None:
        """Delete this cache's entries: those under its key prefix (several caches, or several
        deployments, may share the table)."""
        # Keys are "<KEY_PREFIX>:<version>:<key>" (Django's default key function).
        prefix = f"{self.key_prefix}:"
        SharedStateEntry.objects.using(self._db).filter(key__startswith=prefix).delete()
