"""The diagnosis guard's budgets and extraction histories in the shared store (issue 12), so
that a budget of 20 queries an hour is 20 however many workers and app servers answer, and a
client's queries form one history whichever of them answers.

Each update is a read and a write of one JSON value under a short lock in the same store
(sharedstate/locks.py); the budgets' sliding windows and the monitor's statistics stay the
modelguard's own (modelguard/budgets.py, extraction.py), which know nothing of Django. Budgets
are timestamps under a keyed hash of the client; a monitor history holds the features of the
cases queried (clinical data), so it is sealed before it reaches the store
(sharedstate/sealing.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import BaseCache, caches
from django.utils.crypto import salted_hmac

from carevault.modelguard.budgets import Entries
from carevault.modelguard.extraction import ClientState
from carevault.web.sharedstate import sealing
from carevault.web.sharedstate.locks import held

PREFIX = "cv:diagnosis"
# Charges older than a day no longer count; a history untouched for a week is forgotten (the
# cut-off itself is kept in the database, ClientCutOff, until an officer lifts it).
BUDGET_SECONDS = 24 * 3600 + 60
HISTORY_SECONDS = 7 * 24 * 3600

_T = TypeVar("_T")


def _cache() -> BaseCache:
    return caches["default"]


def _digest(value: str) -> str:
    return salted_hmac("carevault.diagnosis-store", value, algorithm="sha256").hexdigest()[:32]


class SharedBudgetStore:
    """:class:`~carevault.modelguard.budgets.BudgetStore` on the shared cache."""

    def update(self, key: str, change: Callable[[Entries], tuple[Entries, _T]]) -> _T:
        cache, name = _cache(), f"{PREFIX}:budget:{_digest(key)}"
        with held(cache, f"{name}:lock"):
            entries, result = change(_entries(cache.get(name)))
            if entries:
                cache.set(name, entries, BUDGET_SECONDS)
            else:
                cache.delete(name)
        return result

    def read(self, key: str) -> Entries:
        return _entries(_cache().get(f"{PREFIX}:budget:{_digest(key)}"))


def _entries(value: Any) -> Entries:
    if not isinstance(value, list):
        return []
    return [[float(e[0]), float(e[1])] for e in value if isinstance(e, list) and len(e) == 2]


class SharedMonitorStore:
    """:class:`~carevault.modelguard.extraction.MonitorStore` on the shared cache."""

    def _key(self, client_id: str) -> str:
        return f"{PREFIX}:monitor:{_digest(client_id)}"

    def update(
        self, client_id: str, change: Callable[[ClientState | None], tuple[ClientState, _T]]
    ) -> _T:
        cache, name = _cache(), self._key(client_id)
        with held(cache, f"{name}:lock"):
            state, result = change(self.get(client_id))
            plain = json.dumps(state.as_dict(), separators=(",", ":")).encode()
            cache.set(name, sealing.seal(plain, name), HISTORY_SECONDS)
        return result

    def get(self, client_id: str) -> ClientState | None:
        name = self._key(client_id)
        value = _cache().get(name)
        plain = sealing.open_sealed(value, name) if isinstance(value, str) else None
        # A history that does not authenticate is dropped: the client starts afresh (its
        # cut-off, if any, is in the database and holds regardless).
        return ClientState.from_dict(json.loads(plain)) if plain is not None else None

    def clear(self, client_id: str) -> None:
        # Every worker reads the history from here: the next query anywhere starts afresh.
        _cache().delete(self._key(client_id))
