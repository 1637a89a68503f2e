"""The officer's pages: the security dashboard's tests ask for a fresh security layer
(``fresh_security``) and the throttle's hand-moved ``clock`` from tests/web/security_helpers.py."""

from __future__ import annotations

from security_helpers import clock, fresh_security

__all__ = ["clock", "fresh_security"]
