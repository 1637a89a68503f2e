"""What the security officer reads. The officer sees identifiers, never clinical content; the one
exception is the justification a doctor typed when breaking the glass, which the officer must
review. That read decrypts PHI-adjacent text, so it is audited like any other PHI read, with the
:class:`~carevault.web.clientinfo.ClientInfo` the view built (never the request)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from carevault.web.accounts.models import User
from carevault.web.audit.log import record
from carevault.web.clientinfo import NO_CLIENT, ClientInfo
from carevault.web.clinic.models import BreakGlassGrant


@dataclass(frozen=True)
class GrantForReview:
    grant: BreakGlassGrant
    reason: str | None  # None: the sealed reason does not authenticate (tampered)


def active_grants_for_review(
    acting_user: User, *, client: ClientInfo = NO_CLIENT, now: dt.datetime | None = None
) -> list[GrantForReview]:
    """Active break-glass grants with their decrypted reasons; one audit entry per grant read."""
    now = now or timezone.now()
    grants = list(
        BreakGlassGrant.objects.filter(revoked=False, expires_at__gt=now).select_related("doctor")
    )
    if not grants:
        return []
    reviewed = []
    with transaction.atomic():  # one commit for the page's review entries
        for grant in grants:
            reviewed.append(GrantForReview(grant, grant.unseal_or_none("reason")))
            record(
                "breakglass.review",
                actor=acting_user,
                target=grant,
                patient_id=grant.patient_id,
                client=client,
                details={"fields": ["reason"]},
            )
    return reviewed
