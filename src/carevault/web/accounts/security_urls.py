"""Second factor, recovery, password reset and session management (login hardening)."""

from django.urls import path  # noqa: F401

app_name = "account_security"
urlpatterns: list = []  # type: ignore[type-arg]
