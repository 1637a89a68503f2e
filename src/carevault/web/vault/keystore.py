"""Every secret the master key wraps in the database, as one
:class:`~carevault.crypto.kek.WrappedKeyStore`, so ``carevault keys rotate`` rewraps them all:
patients' keyrings, service secrets (including the login key), clinicians' private signing keys
and users' TOTP secrets.

Each kind is a :class:`WrappedColumn`: a model's column holding wrapped key material. The vault
declares its own; an app above it that keeps wrapped secrets (accounts: the TOTP secrets)
registers its column at ``AppConfig.ready()``, so the vault never imports the apps it serves
and a new kind of wrapped secret cannot be forgotten by the rotation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction

from carevault.crypto import Context
from carevault.crypto.kek import keyring_context

from .models import ClinicianKey, PatientKey, ServiceSecret
from .service import keyring_name, signing_context


@dataclass(frozen=True)
class WrappedColumn:
    """One kind of wrapped secret: names ``"<kind>:<id>"`` for each row of ``model`` whose
    ``column`` holds one, and the associated data each was wrapped under. ``optional``: an
    empty column means the row holds none (a user without a second factor)."""

    kind: str
    model: type[models.Model]
    id_field: str
    column: str
    context: Callable[[str], Context]
    optional: bool = False

    def rows(self) -> Any:
        rows = self.model._default_manager.all()
        return rows.exclude(**{self.column: b""}) if self.optional else rows

    def ids(self) -> Iterator[str]:
        for ident in self.rows().values_list(self.id_field, flat=True):
            yield str(ident)

    def get(self, ident: str) -> bytes:
        return bytes(
            self.model._default_manager.values_list(self.column, flat=True).get(
                **{self.id_field: ident}
            )
        )

    def swap(self, ident: str, expected: bytes, new: bytes) -> int:
        # Filtering on the old blob makes the update a compare-and-swap in one statement.
        return int(
            self.model._default_manager.filter(
                **{self.id_field: ident, self.column: expected}
            ).update(**{self.column: new})
        )


def _patient_context(ident: str) -> Context:
    return keyring_context(keyring_name(ident))


def _secret_context(ident: str) -> Context:
    return {"purpose": "service-secret", "name": ident}


def _signing_context(ident: str) -> Context:
    key = ClinicianKey.objects.get(id=ident)
    return signing_context(key.user_id, key.key_id)


_columns: dict[str, WrappedColumn] = {
    column.kind: column
    for column in (
        WrappedColumn("patient", PatientKey, "patient_id", "wrapped", _patient_context),
        WrappedColumn("secret", ServiceSecret, "name", "wrapped", _secret_context),
        WrappedColumn("signing", ClinicianKey, "id", "wrapped_private", _signing_context),
    )
}


def register(column: WrappedColumn) -> None:
    """Add an app's wrapped secrets to what rotation rewraps (once per kind)."""
    _columns[column.kind] = column


def registered_kinds() -> tuple[str, ...]:
    return tuple(_columns)


class DatabaseKeyStore:
    def names(self) -> Iterator[str]:
        for column in tuple(_columns.values()):
            for ident in column.ids():
                yield f"{column.kind}:{ident}"

    def _column(self, name: str) -> tuple[WrappedColumn, str]:
        kind, _, ident = name.partition(":")
        column = _columns.get(kind)
        if column is None:
            raise KeyError(f"no wrapped secret of kind {kind!r}")
        return column, ident

    def context(self, name: str) -> Context:
        column, ident = self._column(name)
        return column.context(ident)

    def get(self, name: str) -> bytes:
        column, ident = self._column(name)
        return column.get(ident)

    @transaction.atomic
    def compare_and_swap(self, name: str, expected: bytes, new: bytes) -> bool:
        column, ident = self._column(name)
        return column.swap(ident, expected, new) == 1
