"""The built-in background tasks. Each takes its :class:`JobRun`'s id first, runs its body
through :func:`registry.tracked`, and is idempotent and resumable: run twice, or killed and run
again, it leaves the same result as once.

* ``reencrypt.job`` / ``reencrypt.pending``: bring stored data up to the encryption floor. The
  re-encryption job checkpoints after every batch (:mod:`carevault.web.vault.reencrypt`); a new
  attempt resumes from the last committed batch and skips values already at the floor.
* ``keys.rotate_patient``: a new data-key version for one patient, once (the run remembers
  the version it started from: a second attempt after the rotation committed does nothing).
* ``audit.seal``: the audit sealer (safe in two processes at once).
* ``security.retrain`` / ``security.retrain_policy``: retrain and seal the risk ensemble or
  the encryption policy as a new version (a killed run sealed nothing: the store writes a
  version atomically).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django_tasks import TaskContext, task

from carevault import config
from carevault.web.audit import sealing
from carevault.web.audit.log import record
from carevault.web.vault import reencrypt, service
from carevault.web.vault.models import ReencryptionJob

from . import registry
from .registry import Deferred, Progress, SafeError, tracked

LONG = "long"


def _reencrypt(
    context: TaskContext,
    run_id: int,
    job_id: int,
    progress: Progress,
    again: dict[str, Any],
) -> str:
    """Run the job; when another live worker holds it, queue this task (``again``: its
    arguments) for when that worker's lease would have run out."""
    job = ReencryptionJob.objects.filter(pk=job_id).first()
    if job is None:
        raise SafeError(f"re-encryption job {job_id} does not exist")
    progress(job.scanned, job.total)
    try:
        done = reencrypt.run(
            job_id,
            batch=int(settings.REENCRYPT_BATCH),
            on_batch=lambda j: progress(j.scanned, j.total),
        )
    except reencrypt.JobBusy:
        # A live worker elsewhere holds the lease (or a dead one on another machine, whose
        # lease runs out): look again once it would have expired.
        held = ReencryptionJob.objects.filter(pk=job_id).first()
        at = held.lease_until if held is not None and held.lease_until else None
        if at is not None and registry.defer(context, run_id, again, at):
            raise Deferred(f"job {job_id} is held by another worker; looking again later") from None
        raise SafeError(f"re-encryption job {job_id} is held by another worker") from None
    progress(done.scanned, done.total)
    return (
        f"job {done.pk} {done.status}: {done.reencrypted} re-encrypted, "
        f"{done.conflicts} conflicts, {done.failures} failures"
    )


@task(takes_context=True, queue_name=LONG)
def reencrypt_job(context: TaskContext, run_id: int, job_id: int) -> str:
    """Run one re-encryption job to its end (from its last checkpoint)."""
    return tracked(
        context, run_id, lambda p: _reencrypt(context, run_id, job_id, p, {"job_id": job_id})
    )


@task(takes_context=True, queue_name=LONG)
def reencrypt_pending(context: TaskContext, run_id: int) -> str:
    """Run every open re-encryption job no worker is on, oldest first."""

    def work(progress: Progress) -> str:
        summaries = [
            _reencrypt(context, run_id, job.pk, progress, {}) for job in reencrypt.abandoned()
        ]
        return "; ".join(summaries) or "no re-encryption job waiting"

    return tracked(context, run_id, work)


@task(takes_context=True, queue_name=LONG)
def rotate_patient_key(
    context: TaskContext, run_id: int, patient_id: str, from_version: int
) -> str:
    """A new primary data-key version for the patient, unless one was made since the run was
    requested (``from_version``: what was primary then)."""

    def work(progress: Progress) -> str:
        progress(0, 1)
        current = service.patient_keyring(patient_id).primary.version
        if current != from_version:
            progress(1, 1)
            return f"already rotated (v{current})"
        version = service.rotate_patient_key(patient_id)
        record(
            "keys.patient_rotate",
            target_type="patient",
            target_id=str(patient_id),
            patient_id=str(patient_id),
            details={"version": version, "run": run_id},
        )
        progress(1, 1)
        return f"data key v{version}"

    return tracked(context, run_id, work)


@task(takes_context=True)
def seal_audit(context: TaskContext, run_id: int) -> str:
    """Seal the unsealed audit entries into signed batches and anchor them."""

    def work(progress: Progress) -> str:
        waiting = sealing.unsealed_count()
        progress(0, waiting)
        result = sealing.seal()
        progress(result.entries, max(waiting, result.entries))
        if result.refused:
            raise SafeError("the audit log is not sealed: see `carevault audit verify`")
        if result.skipped:
            return "another sealer was at work"
        return f"{result.entries} entries in {len(result.batches)} batch(es)"

    return tracked(context, run_id, work)


def _store() -> Any:
    from carevault.modelstore.datadir import model_store

    return model_store(config.data_dir())


@task(takes_context=True, queue_name=LONG)
def retrain_detector(context: TaskContext, run_id: int, seed: int) -> str:
    """Retrain the risk ensemble on generated traffic and seal it as a new version."""
    from carevault.security import training

    def work(progress: Progress) -> str:
        progress(0, 1)
        report = training.train(training.TrainConfig(seed=seed), _store())
        progress(1, 1)
        return f"risk model v{report.get('version', '?')} sealed"

    return tracked(context, run_id, work)


@task(takes_context=True, queue_name=LONG)
def retrain_policy(context: TaskContext, run_id: int, seed: int) -> str:
    """Retrain the adaptive encryption policy and seal it as a new version."""
    from carevault.security.policy_training import train

    def work(progress: Progress) -> str:
        progress(0, 1)
        report = train(_store(), seed=seed)
        progress(1, 1)
        return f"encryption policy v{report.get('version', '?')} sealed"

    return tracked(context, run_id, work)


registry.register("reencrypt.job", reencrypt_job)
registry.register("reencrypt.pending", reencrypt_pending)
registry.register("keys.rotate_patient", rotate_patient_key)
registry.register("audit.seal", seal_audit)
registry.register("security.retrain", retrain_detector)
registry.register("security.retrain_policy", retrain_policy)


def enqueue_reencryption(job_id: int) -> None:
    """The vault's background runner, inside the transaction that requested the job: one run
    per job (a job asked for again while its run waits or works is not queued twice)."""
    if any(r.params.get("job_id") == job_id for r in registry.open_runs("reencrypt.job")):
        return
    total = ReencryptionJob.objects.filter(pk=job_id).values_list("total", flat=True).first()
    registry.enqueue("reencrypt.job", {"job_id": job_id}, total=total or 0)


def enqueue_seal() -> None:
    """The audit sealer's runner: one queued sealing run at a time is enough."""
    registry.enqueue("audit.seal", once=True)


def enqueue_patient_rotation(patient_id: str, *, requested_by: str = "") -> None:
    version = service.patient_keyring(patient_id).primary.version
    registry.enqueue(
        "keys.rotate_patient",
        {"patient_id": str(patient_id), "from_version": version},
        requested_by=requested_by,
    )
