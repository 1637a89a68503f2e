"""Starting and guarding sessions (minimal version; the login-hardening work adds binding,
timeouts and revocation)."""

from __future__ import annotations

from django.contrib.auth import login
from django.http import HttpRequest

from .models import User


def complete_login(request: HttpRequest, user: User) -> None:
    """Start the user's session. Django's login() rotates the session key (no fixation)."""
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
