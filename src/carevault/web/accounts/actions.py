"""Account administration by the security officer: every change is atomic and audited, and
takes the acting officer and a :class:`~carevault.web.clientinfo.ClientInfo` (never a request).

Patients are never made here: a patient account is tied to a patient record (self-registration,
:func:`carevault.web.clinic.actions.do_register_patient`), so the patient role can be neither
given to nor taken from an account.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from carevault.web.audit.log import record
from carevault.web.clientinfo import NO_CLIENT, ClientInfo
from carevault.web.errors import NotAllowed, ValidationFailed

from .models import Role, User
from .passwords import set_validated_password

STAFF_ROLES: tuple[str, ...] = (Role.DOCTOR, Role.LABTECH, Role.ADMIN)
PATIENT_ROLE_MESSAGE = (
    "a patient account is tied to a patient record: it cannot be turned into a staff account, "
    "and a staff account cannot be turned into a patient"
)


def require_officer(acting_user: User) -> None:
    if acting_user.role != Role.ADMIN or not acting_user.is_active:
        raise NotAllowed("only security officers manage accounts")


def _clean_username(username: str) -> str:
    username = str(username or "").strip()
    if not username:
        raise ValidationFailed("username is required", field="username")
    if len(username) > 150:
        raise ValidationFailed("username is longer than 150 characters", field="username")
    try:
        User.username_validator(username)
    except ValidationError:
        raise ValidationFailed(
            "username may contain only letters, digits and @ . + - _", field="username"
        ) from None
    # Case-insensitive: "Doctor1" next to "doctor1" invites mistakes and impersonation.
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationFailed("that username is taken", field="username")
    return username


@transaction.atomic
def do_create_staff_user(
    acting_user: User,
    *,
    username: str,
    display_name: str,
    role: str,
    password: str,
    client: ClientInfo = NO_CLIENT,
) -> User:
    """A doctor, lab technician or officer account with an initial password."""
    require_officer(acting_user)
    if role == Role.PATIENT:
        raise ValidationFailed(
            "patients register themselves (their account is tied to a patient record)",
            field="role",
        )
    if role not in STAFF_ROLES:
        raise ValidationFailed("choose a staff role", field="role")
    username = _clean_username(username)
    display_name = str(display_name or "").strip()
    if not display_name:
        raise ValidationFailed("display name is required", field="display_name")
    if len(display_name) > 120:
        raise ValidationFailed("display name is longer than 120 characters", field="display_name")
    user = User(username=username, display_name=display_name, role=role)
    set_validated_password(user, password)
    user.save()
    record(
        "account.create",
        actor=acting_user,
        target=user,
        client=client,
        details={"username": user.username, "role": role},
    )
    return user


@transaction.atomic
def do_change_role(
    acting_user: User, user: User, role: str, *, client: ClientInfo = NO_CLIENT
) -> User:
    """Move a staff account to another staff role."""
    require_officer(acting_user)
    if role not in Role.values:
        raise ValidationFailed("unknown role", field="role")
    locked = User.objects.select_for_update().get(pk=user.pk)
    if locked.role == Role.PATIENT or role == Role.PATIENT:
        raise ValidationFailed(PATIENT_ROLE_MESSAGE, field="role")
    if locked.pk == acting_user.pk:
        # Otherwise the last officer could demote themselves and leave nobody to run the site.
        raise NotAllowed("you cannot change your own role; ask another security officer")
    if locked.role == role:
        return locked
    previous = locked.role
    locked.role = role
    locked.save(update_fields=["role"])
    record(
        "account.role_change",
        actor=acting_user,
        target=locked,
        client=client,
        details={"username": locked.username, "from": previous, "to": role},
    )
    user.role = role
    return locked


@transaction.atomic
def do_set_active(
    acting_user: User, user: User, active: bool, *, client: ClientInfo = NO_CLIENT
) -> User:
    """Deactivate (no login, existing sessions stop working) or reactivate an account."""
    require_officer(acting_user)
    if user.pk == acting_user.pk and not active:
        raise NotAllowed("you cannot deactivate your own account")
    locked = User.objects.select_for_update().get(pk=user.pk)
    if locked.is_active == active:
        return locked
    locked.is_active = active
    locked.save(update_fields=["is_active"])
    record(
        "account.activate" if active else "account.deactivate",
        actor=acting_user,
        target=locked,
        client=client,
        details={"username": locked.username, "role": locked.role},
    )
    user.is_active = active
    return locked
