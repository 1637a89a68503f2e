"""Typed errors of the actions layer (Zulip style): a code for machines, a message for people,
an HTTP status for the views and the API. Messages never contain PHI."""

from __future__ import annotations


class ActionError(Exception):
    code = "invalid"
    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationFailed(ActionError):
    code = "validation_failed"


class NotAllowed(ActionError):
    code = "not_allowed"
    status = 403


class Conflict(ActionError):
    code = "conflict"
    status = 409
