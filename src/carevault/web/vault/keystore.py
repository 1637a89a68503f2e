"""Every secret the master key wraps in the database, as one
:class:`~carevault.crypto.kek.WrappedKeyStore`, so ``carevault keys rotate`` rewraps them all:
patients' keyrings, service secrets (including the login key), clinicians' private signing keys
and users' TOTP secrets."""

from __future__ import annotations

from collections.abc import Iterator

from django.db import transaction

from carevault.crypto import Context
from carevault.crypto.kek import keyring_context
from carevault.web.accounts.models import User

from .models import ClinicianKey, PatientKey, ServiceSecret
from .service import keyring_name, signing_context


class DatabaseKeyStore:
    def names(self) -> Iterator[str]:
        for patient_id in PatientKey.objects.values_list("patient_id", flat=True):
            yield keyring_name(patient_id)
        for name in ServiceSecret.objects.values_list("name", flat=True):
            yield f"secret:{name}"
        for key_uuid in ClinicianKey.objects.values_list("id", flat=True):
            yield f"signing:{key_uuid}"
        for user_id in User.objects.exclude(totp_wrapped=b"").values_list("id", flat=True):
            yield f"totp:{user_id}"

    def context(self, name: str) -> Context:
        kind, _, ident = name.partition(":")
        if kind == "patient":
            return keyring_context(name)
        if kind == "secret":
            return {"purpose": "service-secret", "name": ident}
        if kind == "totp":
            return {"purpose": "totp", "user": ident}
        key = ClinicianKey.objects.get(id=ident)
        return signing_context(key.user_id, key.key_id)

    def get(self, name: str) -> bytes:
        kind, _, ident = name.partition(":")
        if kind == "patient":
            return bytes(PatientKey.objects.values_list("wrapped", flat=True).get(patient_id=ident))
        if kind == "secret":
            return bytes(ServiceSecret.objects.values_list("wrapped", flat=True).get(name=ident))
        if kind == "totp":
            return bytes(User.objects.values_list("totp_wrapped", flat=True).get(id=ident))
        return bytes(ClinicianKey.objects.values_list("wrapped_private", flat=True).get(id=ident))

    @transaction.atomic
    def compare_and_swap(self, name: str, expected: bytes, new: bytes) -> bool:
        kind, _, ident = name.partition(":")
        # Filtering on the old blob makes the update a compare-and-swap in one statement.
        if kind == "patient":
            rows = PatientKey.objects.filter(patient_id=ident, wrapped=expected).update(wrapped=new)
        elif kind == "secret":
            rows = ServiceSecret.objects.filter(name=ident, wrapped=expected).update(wrapped=new)
        elif kind == "totp":
            rows = User.objects.filter(id=ident, totp_wrapped=expected).update(totp_wrapped=new)
        else:
            rows = ClinicianKey.objects.filter(id=ident, wrapped_private=expected).update(
                wrapped_private=new
            )
        return rows == 1
