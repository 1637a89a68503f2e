"""Rules over the counts every worker shares.

The scorer's feature windows live in one process; the server runs several workers. Events of
the kinds that gate an attacker are also checked against ``rules.SHARED_RULES`` with counts
every worker shares (:func:`with_shared_rules`: the stored events and the login throttle),
whatever scorer is loaded: a run of denials, an address spray, runs of refused packets, uploads
or paused sign-ins (the throttle's one summary event per run), the throttle's limits. A rule
that fires sets a floor under the risk.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.conf import settings

from carevault.security import rules as hard_rules
from carevault.security.assessment import Assessment
from carevault.security.events import EventKind
from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.login import throttle

from .history import DbHistory
from .models import SecurityEvent
from .observed import Observed

# Kinds that gate an attacker and that SHARED_RULES read counts for.
SHARED_KINDS = frozenset(
    {
        EventKind.LOGIN_FAILURE,
        EventKind.PACKET_REJECTED,
        EventKind.ACCESS_DENIED,
        EventKind.UPLOAD,
        EventKind.PHI_WRITE,  # break-the-glass grants only (shared_counts)
    }
)
_LOGIN_KINDS = (EventKind.LOGIN_FAILURE.value, EventKind.LOGIN_SUCCESS.value)
# The most distinct names read for one address (the rule's limit is far below).
_DISTINCT_CAP = 100


def shared_counts(observed: Observed) -> dict[str, float]:
    """The counts :data:`~carevault.security.rules.SHARED_RULES` read, over the stored events
    (which every worker writes) and the login throttle (the shared store), this event
    included. One indexed query each, only for the kinds that need them."""
    event, history = observed.event, DbHistory()
    counts: dict[str, float] = {}
    at = event.at
    if event.kind is EventKind.PHI_WRITE:
        if observed.action == "breakglass.open" and event.actor:
            # Audited before it is observed: the count includes this grant.
            counts["breakglass_actor_1h"] = AuditEntry.objects.filter(
                action="breakglass.open",
                actor=event.actor,
                at__gte=dt.datetime.fromtimestamp(at - 3600, tz=dt.UTC),
            ).count()
        return counts
    if event.kind is EventKind.UPLOAD:
        if event.actor and event.outcome != "ok":
            refused = history.count(
                {EventKind.UPLOAD}, at - 600, actor=event.actor, outcome=event.outcome
            )
            counts["rejected_uploads_actor_10m"] = refused + 1
        return counts
    if event.kind is EventKind.ACCESS_DENIED:
        if event.actor:
            denied = history.count({EventKind.ACCESS_DENIED}, at - 600, actor=event.actor)
            counts["denied_actor_10m"] = denied + 1
        return counts
    if event.kind is EventKind.LOGIN_FAILURE:
        failure = {EventKind.LOGIN_FAILURE}
        if event.address:
            counts["fail_address_1h"] = history.count(failure, at - 3600, address=event.address) + 1
            names = set(
                SecurityEvent.objects.filter(
                    kind__in=_LOGIN_KINDS,
                    address=event.address,
                    at__gte=dt.datetime.fromtimestamp(at - 600, tz=dt.UTC),
                )
                .exclude(actor="")
                .values_list("actor", flat=True)
                .distinct()[:_DISTINCT_CAP]
            )
            if event.actor:
                names.add(event.actor)
            counts["accounts_address_10m"] = len(names)
    if event.kind is EventKind.PACKET_REJECTED and event.address:
        rejected = history.count({EventKind.PACKET_REJECTED}, at - 600, address=event.address)
        counts["rejects_address_10m"] = rejected + 1
    if throttle_limit_reached(observed):
        counts["throttle_limit"] = 1
    return counts


def throttle_limit_reached(observed: Observed) -> bool:
    """Whether the login throttle's evidence of an attack is in force for the event: its
    address at one of the address limits, or the account at its suspension limit (counting
    this failure, which is audited before the throttle counts it)."""
    event, user = observed.event, observed.user
    if event.address and throttle.address_evidence(event.address):
        return True
    if event.kind is EventKind.LOGIN_FAILURE and user is not None:
        stored = User.objects.filter(pk=user.pk).values_list("consecutive_failures", flat=True)
        return int(stored.first() or 0) + 1 >= int(settings.LOGIN_SUSPEND_AFTER)
    return False


def with_shared_rules(observed: Observed, assessment: Assessment) -> Assessment:
    """The assessment, with :data:`~carevault.security.rules.SHARED_RULES` checked on counts
    every worker shares (whatever scorer is loaded): a rule that fires sets a floor under the
    risk and is named with the others; the counts it read join the reported features."""
    event = observed.event
    if event.kind not in SHARED_KINDS:
        return assessment
    counts = shared_counts(observed)
    fired = hard_rules.check(event, hard_rules.SHARED_RULES, hard_rules.Counts(counts))
    if not fired.fired:
        return assessment
    features = dict(assessment.features)
    for name, value in counts.items():
        if value and value > features.get(name, 0.0):
            features[name] = float(value)
    return dataclasses.replace(
        assessment,
        risk=max(float(assessment.risk), fired.floor),
        features=features,
        rules=tuple(dict.fromkeys((*assessment.rules, *fired.fired))),
    )
