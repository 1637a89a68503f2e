"""Failed-login counting, back-off, temporary blocks and suspension (minimal version; the
login-hardening work extends it). Counters live in the Django cache so that several app servers
share them through Redis."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest

from .models import User


@dataclass(frozen=True)
class ThrottleDecision:
    blocked: bool
    retry_after: int = 0
    reason: str = ""


def check(username: str, address: str) -> ThrottleDecision:
    return ThrottleDecision(blocked=False)


def record_failure(username: str, address: str, *, request: HttpRequest | None = None) -> None:
    return None


def record_success(user: User, address: str) -> None:
    return None
