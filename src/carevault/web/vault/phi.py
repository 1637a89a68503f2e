"""A base for models that hold PHI: every PHI column is a ``<name>_enc`` binary field holding an
envelope from the crypto core, bound to table / column / row / patient, under the patient's key.

Primary keys are UUIDs made before the first save, so a row's identity (part of the associated
data) is known when its fields are sealed.

**No blank blind spot.** Every PHI column holds a ciphertext, always: an optional value that is
absent is sealed as the empty string (an authenticated "absent"), when the row is first saved.
So an empty or NULL column is never a legitimate state: it reads as tampered (the opaque
TAMPERED mark and a ``phi.decryption_failed`` alert), exactly like a ciphertext that does not
authenticate. Rows written before this rule had empty optional columns; the migrations
``clinic 0002`` and ``labs 0002`` seal them as "absent" once, so existing data still reads.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.db import models

from carevault.crypto import DecryptionError
from carevault.security.policy import DataClass, Decision
from carevault.web.audit.log import Outcome, record

from . import adaptive, service
from .context import WriteContext


class PhiModel(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)

    PHI_FIELDS: ClassVar[tuple[str, ...]] = ()

    class Meta:
        abstract = True

    def phi_patient_id(self) -> Any:
        return self.patient_id  # type: ignore[attr-defined]

    def phi_data_class(self, values: dict[str, str]) -> DataClass:
        """The class of this record's data for the encryption policy (``values``: what is being
        sealed now). Ordinary unless a model knows better (diagnoses, lab requests)."""
        return DataClass.ORDINARY

    def seal(self, ctx: WriteContext, /, **values: str) -> int:
        """Encrypt the given PHI values into their columns, under the suite the adaptive policy
        picks for this write in ``ctx`` (logged per record); returns how many were sealed.

        ``ctx`` is the writing action's (:func:`carevault.web.vault.context.write_context`), or
        :data:`~carevault.web.vault.context.SYSTEM_WRITE` for a write outside any session."""
        for column in values:
            if column not in self.PHI_FIELDS:
                raise ValueError(f"{type(self).__name__} has no PHI field {column!r}")
        patient_id = self.phi_patient_id()
        table = self._meta.db_table
        size = sum(len(value.encode()) for value in values.values())
        decision = adaptive.decide(ctx, self.phi_data_class(values), size)
        row = self.phi_row()
        for column, value in values.items():
            setattr(self, f"{column}_enc", row.seal(column, value, suite=decision.suite))
        adaptive.log_decision(table, self.pk, patient_id, decision)
        self.encryption_decision: Decision | None = decision
        return len(values)

    def save(self, *args: Any, **kwargs: Any) -> None:
        """On the first save, seal every PHI column still empty as an authenticated "absent"
        (the empty string). Only then: an update must never turn a column someone blanked into
        a valid empty value (that would launder the tampering)."""
        if self._state.adding:
            self._seal_absent()
        super().save(*args, **kwargs)

    def _seal_absent(self) -> None:
        missing = [c for c in self.PHI_FIELDS if not getattr(self, f"{c}_enc", None)]
        if not missing:
            return
        decision = getattr(self, "encryption_decision", None)
        suite = decision.suite if decision is not None else None
        row = self.phi_row()
        for column in missing:
            setattr(self, f"{column}_enc", row.seal(column, "", suite=suite))

    def reencrypt_attachments(self, target: Any, reason: str) -> tuple[int, int, int]:
        """Bring what this record keeps outside its columns (stored files) up to ``target``
        (a :class:`carevault.crypto.Suite`); (re-encrypted, conflicts, failures). Nothing by
        default; see :mod:`carevault.web.vault.reencrypt`."""
        return 0, 0, 0

    def phi_row(self) -> service.PhiRow:
        """This row's fields, sealed and opened with its context encoded once (table, row,
        patient; each field adds its column). Build one per write or read, never keep it."""
        return service.PhiRow(self.phi_patient_id(), self._meta.db_table, self.pk)

    def unseal(self, column: str, *, row: service.PhiRow | None = None) -> str:
        """The plaintext of one PHI column; :class:`DecryptionError` if it was tampered with.

        ``row``: this row's :meth:`phi_row`, when several columns are read at once."""
        sealed = getattr(self, f"{column}_enc")
        if not sealed:
            # Every column holds a ciphertext (see the module's docstring): empty is tampering.
            raise DecryptionError()
        return (row if row is not None else self.phi_row()).open_text(column, sealed)

    def unseal_or_none(self, column: str, *, row: service.PhiRow | None = None) -> str | None:
        """The plaintext, or None when it does not authenticate (shown as tampered).

        A stored value that does not authenticate is tampering (or a swapped ciphertext): it is
        audited as ``phi.decryption_failed``, which the security layer answers (issue 5)."""
        try:
            return self.unseal(column, row=row)
        except DecryptionError:
            self.report_decryption_failure(column)
            return None

    def report_decryption_failure(self, column: str) -> None:
        """Audit stored data of this row that does not authenticate (``column``: a PHI column,
        or what else was checked, e.g. an encrypted file)."""
        self._report_integrity_failure("phi.decryption_failed", {"column": column})

    def report_signature_failure(self) -> None:
        """Audit a signed record whose fields decrypt but whose signature does not verify
        (``phi.signature_failed``): tampering too, answered by the security layer."""
        self._report_integrity_failure("phi.signature_failed", {})

    def _report_integrity_failure(self, action: str, details: dict[str, str]) -> None:
        record(
            action,
            outcome=Outcome.ALERT,
            target_type=self._meta.label_lower,
            target_id=str(self.pk),
            patient_id=self.phi_patient_id(),
            details=details,
        )

    def unseal_all(self) -> dict[str, str | None]:
        row = self.phi_row()
        return {column: self.unseal_or_none(column, row=row) for column in self.PHI_FIELDS}
