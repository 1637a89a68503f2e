"""TOTP second factor and recovery codes (minimal version; the login-hardening work adds
enrolment, verification and step-up)."""

from __future__ import annotations

from django.http import HttpRequest

from .models import User

PENDING_KEY = "cv_pending_user"


def begin(request: HttpRequest, user: User) -> None:
    """Remember, in the session, who passed the password step and still owes a second factor."""
    request.session.cycle_key()
    request.session[PENDING_KEY] = user.pk
