"""What the security officer reads. The officer sees identifiers, never clinical content; the one
exception is the justification a doctor typed when breaking the glass, which the officer must
review. That read decrypts PHI-adjacent text, so it is audited like any other PHI read, with the
:class:`~carevault.web.clientinfo.ClientInfo` the view built (never the request)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from carevault.web.accounts.models import Role, User
from carevault.web.audit.log import record
from carevault.web.clientinfo import NO_CLIENT, ClientInfo
from carevault.web.clinic.models import BreakGlassGrant
from carevault.web.errors import Conflict, NotAllowed


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


# -- background jobs (issue 16) --------------------------------------------------------------------


def background_jobs(limit: int = 50) -> dict[str, Any]:
    """Running and recent background jobs, the workers seen lately, for the jobs page."""
    from carevault.web.jobs.models import OPEN_STATES, JobRun, JobState, WorkerBeat

    runs = list(JobRun.objects.all()[:limit])
    recent = timezone.now() - dt.timedelta(seconds=int(settings.TASKS_DEAD_AFTER_SECONDS))
    workers = list(
        WorkerBeat.objects.filter(stopped_at__isnull=True, beat_at__gte=recent).order_by(
            "started_at"
        )
    )
    retried = set(
        JobRun.objects.filter(retry_of__in=[r.pk for r in runs]).values_list("retry_of", flat=True)
    )
    for run in runs:
        # Read by the row template (a table row sees only its row).
        run.can_retry = run.state == JobState.FAILED and run.pk not in retried  # type: ignore[attr-defined]
    return {
        "runs": runs,
        "any_open": any(r.state in OPEN_STATES for r in runs),
        "workers": workers,
        "tasks_mode": settings.TASKS_MODE,
        "startable": [(kind, label) for kind, (label, _) in OFFICER_JOBS.items()],
    }


@transaction.atomic
def do_retry_job(acting_user: User, run_id: int, *, client: ClientInfo = NO_CLIENT) -> Any:
    """Queue a failed background job again (the same kind and arguments; every task is
    idempotent and resumes from its checkpoint). Audited; Conflict unless it failed and was
    not retried already."""
    from carevault.web.jobs import registry
    from carevault.web.jobs.models import JobRun, JobState

    if acting_user.role != Role.ADMIN or not acting_user.is_active:
        raise NotAllowed("only security officers retry background jobs")
    run = JobRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None:
        raise Conflict(f"there is no background job {run_id}")
    if run.state != JobState.FAILED:
        raise Conflict(f"job {run.pk} has not failed: only a failed job is retried")
    if JobRun.objects.filter(retry_of=run).exists():
        raise Conflict(f"job {run.pk} was retried already")
    try:
        again = registry.enqueue(
            run.kind, run.params, requested_by=acting_user.username, retry_of=run, total=run.total
        )
    except registry.UnknownJob:
        # A kind only workers know (backups: a layer above the web app queues them).
        raise Conflict(f"{run.kind} is queued by the workers: it runs again on schedule") from None
    record(
        "jobs.retry",
        actor=acting_user,
        client=client,
        target_type="jobs.jobrun",
        target_id=str(run.pk),
        details={"kind": run.kind, "retry": again.pk if again is not None else None},
    )
    return again


# What an officer may start from the Background jobs page: kinds without arguments to choose.
OFFICER_JOBS = {
    "security.retrain": ("Retrain the risk model", {"seed": 0}),
    "security.retrain_policy": ("Retrain the encryption policy", {"seed": 0}),
    "reencrypt.pending": ("Resume abandoned re-encryption", {}),
    "audit.seal": ("Seal the audit log now", {}),
}


@transaction.atomic
def do_queue_job(acting_user: User, kind: str, *, client: ClientInfo = NO_CLIENT) -> Any:
    """Queue one of :data:`OFFICER_JOBS`. Audited."""
    from carevault.web.jobs import registry

    if acting_user.role != Role.ADMIN or not acting_user.is_active:
        raise NotAllowed("only security officers start background jobs")
    if kind not in OFFICER_JOBS:
        raise Conflict("no such background job")
    run = registry.enqueue(kind, dict(OFFICER_JOBS[kind][1]), requested_by=acting_user.username)
    record(
        "jobs.queue",
        actor=acting_user,
        client=client,
        target_type="jobs.jobrun",
        target_id=str(run.pk) if run is not None else "",
        details={"kind": kind},
    )
    return run
