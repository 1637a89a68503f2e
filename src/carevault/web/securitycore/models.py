"""Security events, incidents, the responses taken, and the system-wide security state.

No PHI anywhere in these tables: actors are login names (failed logins naming no account are
kept as a keyed hash, since people type passwords into the name field), sessions are keyed
hashes, patients are their random record ids. Explanations are built from these and from
feature names and numbers only.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class IncidentStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    CLOSED = "closed", "Closed"


ACTIVE_STATUSES = (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED)


class Incident(models.Model):
    """Events above the incident threshold about the same subjects (an address, an account, a
    patient's data, the host), grouped while the incident is active."""

    opened_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=IncidentStatus.choices, default=IncidentStatus.OPEN
    )
    level = models.PositiveSmallIntegerField(default=0)  # highest response level reached
    risk = models.FloatField(default=0.0)  # highest risk seen
    title = models.CharField(max_length=200)
    # The explanation of the riskiest event: which event, which detectors, which features.
    explanation = models.TextField(blank=True)
    detectors = models.JSONField(default=dict)  # highest score of each detector
    features = models.JSONField(default=dict)  # the riskiest event's top features
    rules = models.JSONField(default=list)  # every hard rule that fired
    event_count = models.PositiveIntegerField(default=0)
    escalations = models.PositiveSmallIntegerField(default=0)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return f"incident {self.pk}: {self.title}"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class IncidentSubject(models.Model):
    """What an incident is about: ``address:<ip>``, ``account:<name>``, ``patient:<id>``,
    ``host``. A new risky event joins the active incident that shares one of its subjects."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="subjects")
    key = models.CharField(max_length=200)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["incident", "key"], name="incident_subject_once")
        ]
        indexes = [models.Index(fields=["key"])]


class SecurityEvent(models.Model):
    """One :class:`carevault.security.events.Event`, its score and why (kept so models can be
    retrained on real traffic and decisions explained later)."""

    at = models.DateTimeField()
    kind = models.CharField(max_length=32)
    actor = models.CharField(max_length=150, blank=True)
    role = models.CharField(max_length=16, blank=True)
    address = models.CharField(max_length=64, blank=True)
    network = models.CharField(max_length=64, blank=True)
    client = models.CharField(max_length=64, blank=True)
    session = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=16, blank=True)
    records = models.PositiveIntegerField(default=0)
    # The patient of a single-patient event ("" otherwise): what the scraping count looks at.
    patient = models.CharField(max_length=64, blank=True)
    patients = models.JSONField(default=list)
    # The event's remaining fields (uploads, host samples, timing): Event(**...) rebuilds it.
    payload = models.JSONField(default=dict)
    audit_seq = models.BigIntegerField(null=True, blank=True)
    # None until scored (events deferred to batch scoring, see scoring.py).
    risk = models.FloatField(null=True, blank=True)
    level = models.PositiveSmallIntegerField(default=0)
    detectors = models.JSONField(default=dict)
    features = models.JSONField(default=dict)
    rules = models.JSONField(default=list)
    scorer = models.CharField(max_length=64, blank=True)
    score_ms = models.FloatField(null=True, blank=True)
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    # Background scoring (scorer.py): the scorer that claimed the unscored row ("" none) and
    # when; a claim older than the lease is a dead scorer's and is taken over.
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [
            # The pending rows (the durable scoring queue), small whatever the table's size.
            models.Index(
                fields=["at"], name="securityevent_pending", condition=models.Q(risk__isnull=True)
            ),
            models.Index(fields=["kind", "address", "at"]),
            models.Index(fields=["kind", "actor", "at"]),
            models.Index(fields=["session", "at"]),
            models.Index(fields=["at"]),
        ]


class ResponseStatus(models.TextChoices):
    IN_FORCE = "in_force", "In force"  # reversible, still holding
    DONE = "done", "Done"  # one-off (a step-up, an ended session, a rotated key)
    FAILED = "failed", "Failed"
    LIFTED = "lifted", "Lifted"  # undone by a security officer
    ENDED = "ended", "Ended"  # expired, or undone elsewhere (e.g. the owner's second factor)


class ResponseRecord(models.Model):
    """One automated (or escalated) response: what was done, to what, why, and who undid it."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="responses")
    event = models.ForeignKey(
        SecurityEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="responses"
    )
    at = models.DateTimeField()
    action = models.CharField(max_length=32)
    level = models.PositiveSmallIntegerField()
    target = models.CharField(max_length=200)
    explanation = models.TextField()
    note = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=16, choices=ResponseStatus.choices)
    until = models.DateTimeField(null=True, blank=True)
    reversible = models.BooleanField(default=False)
    # Set when an officer's escalation ordered it (automatic responses have none).
    ordered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lifted_at = models.DateTimeField(null=True, blank=True)
    lift_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["status", "action"])]

    def _action(self) -> Any:
        from carevault.security.response import ActionKind, Level, ResponseAction

        seconds = int((self.until - self.at).total_seconds()) if self.until else 0
        return ResponseAction(ActionKind(self.action), Level(self.level), self.target, "", seconds)

    @property
    def purpose(self) -> str:
        """What the response is for (carevault.security.response.PURPOSES)."""
        return str(self._action().purpose)

    @property
    def who_lifts(self) -> str:
        """Who may lift it, and how (the dashboard shows it beside the Lift button)."""
        return str(self._action().who_lifts)


class SecurityState(models.Model):
    """One row: the system-wide encryption floor the security layer raised, and until when.

    The adaptive policy (issue 6) reads it through :func:`carevault.web.securitycore.state.
    current_floor`: while in force, nothing is encrypted with a suite weaker than
    ``floor_suite``. An empty ``floor_suite``, or a ``floor_until`` in the past, means no
    raised floor (the policy's own minimum applies)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    floor_suite = models.CharField(max_length=64, blank=True)
    floor_until = models.DateTimeField(null=True, blank=True)
    floor_reason = models.CharField(max_length=300, blank=True)
    floor_raised_at = models.DateTimeField(null=True, blank=True)
    floor_incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def as_dict(self) -> dict[str, Any]:
        return {
            "floor_suite": self.floor_suite,
            "floor_until": self.floor_until.isoformat() if self.floor_until else None,
            "floor_reason": self.floor_reason,
        }
