"""Where a patient's password-reset link goes: the e-mail address on their patient record.

The login app's password reset (:mod:`carevault.web.login.recovery`) must not import the clinic
(the clinic's actions sit above login in the layers), so the clinic hands it this lookup at
start-up (:meth:`ClinicConfig.ready`). Staff accounts have no e-mail address: none is found.
"""

from __future__ import annotations

from carevault.web.accounts.models import User

from .actions import find_patients_by_email
from .models import Patient


def _anonymous() -> User:
    # The lookup is anonymous (whoever asks for a reset is not logged in);
    # find_patients_by_email does not use its actor.
    user = User(pk=0, username="password-reset", last_login=None)
    user.set_unusable_password()
    return user


def reset_recipients(identifier: str) -> list[tuple[User, str]]:
    """(account, e-mail address) pairs for a username or an e-mail address (already trimmed);
    the caller keeps only active accounts with an address."""
    if "@" in identifier:
        patients = find_patients_by_email(_anonymous(), identifier)
        return [(p.user, p.unseal_or_none("email") or "") for p in patients if p.user]
    user = User.objects.filter(username__iexact=identifier).first()
    patient = Patient.objects.filter(user=user).first() if user is not None else None
    return [(user, patient.unseal_or_none("email") or "")] if patient and user else []
