"""The web layer's :class:`~carevault.security.response.ResponseSink`: each action through the
module that owns it (the session guard's step-up, the login throttle's address blocks, the
account's suspension fields and session epoch, the vault's key rotation, the floor).

Sessions are acted on only through the request being served (the sink never holds a session
key it did not see, nor the request): a step-up or an ended session is left on its
:class:`~.context.Serving` for the security middleware to carry out at the end of the request,
so the view finishes with the user it started with; an ended session's response is replaced by a
redirect to the login page (the page that triggered the response is not delivered). A session
seen earlier is reached through its account: revoking all of them bumps the epoch.
"""

from __future__ import annotations

from django.utils import timezone

from carevault.crypto import Suite
from carevault.security.response import ResponseAction
from carevault.web.accounts.models import User
from carevault.web.login import actions as login_actions
from carevault.web.login import throttle
from carevault.web.vault import reencrypt, service

from . import state as security_state
from .context import Serving
from .models import Incident


class WebResponseSink:
    def __init__(
        self,
        incident: Incident,
        *,
        serving: Serving | None,
        ordered_by: User | None = None,
    ) -> None:
        self.incident = incident
        self.serving = serving
        self.ordered_by = ordered_by

    def _reason(self, action: ResponseAction) -> str:
        who = f" (ordered by {self.ordered_by.username})" if self.ordered_by else ""
        return f"security incident #{self.incident.pk}, {action.level.label}{who}"

    def _live(self) -> Serving:
        if self.serving is None:
            raise RuntimeError("no live session to act on")
        return self.serving

    def step_up(self, action: ResponseAction) -> str:
        self._live().pending.step_up = self._reason(action)
        return "a fresh second factor is required"

    def block_session(self, action: ResponseAction) -> str:
        self._live().pending.end_session = self._reason(action)
        return "session ended"

    def throttle_address(self, action: ResponseAction) -> str:
        created = throttle.block_address(
            action.target, self._reason(action), seconds=action.seconds
        )
        return f"blocked for {action.seconds} s" if created else "already blocked"

    def suspend_account(self, action: ResponseAction) -> str:
        user = User.objects.select_for_update().filter(username=action.target).first()
        if user is None:
            raise LookupError("no such account")
        if user.suspended_at is not None:
            return "already suspended"
        user.suspended_at = timezone.now()
        user.suspension_reason = self._reason(action)[:200]
        user.save(update_fields=["suspended_at", "suspension_reason"])
        return "suspended"

    def revoke_sessions(self, action: ResponseAction) -> str:
        user = User.objects.filter(username=action.target).first()
        if user is None:
            raise LookupError("no such account")
        login_actions.do_revoke_all_sessions(self.ordered_by, user, reason=self._reason(action))
        serving = self.serving
        served = serving.user() if serving is not None else None
        if serving is not None and served is not None and served.pk == user.pk:
            # The current response is not delivered either.
            serving.pending.end_session = self._reason(action)
        return f"session epoch {user.session_epoch}"

    def rotate_keys(self, action: ResponseAction) -> str:
        patient_id = action.target
        floor = security_state.current_floor()
        current = service.patient_keyring(patient_id).primary.suite
        suite: Suite | None = None
        if floor is not None:
            wanted = Suite.parse(floor.suite)
            if wanted.is_symmetric and wanted.level > current.level:
                suite = wanted
        version = service.rotate_patient_key(patient_id, suite)
        return f"data key v{version} ({(suite or current).label})"

    def raise_floor(self, action: ResponseAction) -> str:
        floor = security_state.raise_floor(
            action.target,
            seconds=action.seconds,
            reason=self._reason(action),
            incident=self.incident,
        )
        # Data already stored below the new floor is brought up to it in the background.
        job = reencrypt.escalate(Suite.parse(floor.suite), f"floor raised: {self._reason(action)}")
        return (
            f"floor {floor.suite} until {floor.until.isoformat(timespec='seconds')}; "
            f"re-encryption job {job.pk}"
        )
