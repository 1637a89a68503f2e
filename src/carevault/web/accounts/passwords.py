"""Setting a password through Django's validators, their messages turned into a form error."""

from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from carevault.web.errors import ValidationFailed

from .models import User


def set_validated_password(user: User, password: str) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationFailed(" ".join(exc.messages), field="password") from None
    user.set_password(password)
