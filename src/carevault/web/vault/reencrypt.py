"""Re-encryption under escalation (issue 6): when the floor rises, stored values and files sealed
under weaker suites are sealed again under the floor, in the background.

* **Resumable.** A job visits every PHI table in primary-key order, a batch at a time, and saves
  its cursor and counters after each batch in the same transaction as the batch's updates. A
  worker killed midway loses at most the batch it was in, whose updates rolled back with it; the
  next worker starts from the saved cursor, and values already at the floor are skipped.
* **Concurrent edits are never overwritten.** Each row is updated with a compare-and-set on the
  exact ciphertexts that were read; a row that changed meanwhile is read again and retried, and
  left to its writer if it keeps changing (the writer's own write honours the floor: every
  write asks the policy, which applies the system floor).
* **One worker at a time** holds a job's lease; a worker whose lease expired (killed, stuck) is
  replaced by the next one that looks (``carevault keys reencrypt``, or a task-queue worker:
  :mod:`carevault.web.jobs`). The lease names its holder's host, boot and process: a worker on
  the same machine whose holder's process is gone takes the job over at once instead of waiting
  out the lease.
* **Nothing the committed state needs is removed before the commit** (issue 13): a stored file is
  re-encrypted into a new file, the record is pointed at it in the batch's transaction, and the
  old file is removed only once that transaction committed. A kill at any instant leaves at
  worst an unreferenced file, which :mod:`carevault.web.vault.sweep` removes.
* A value that does not authenticate is left exactly as it is and counted as a failure: the read
  path reports it as tampering; re-encrypting it would launder it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from carevault import faults
from carevault.crypto import CryptoError, Suite, parse_header
from carevault.web.audit.log import Outcome, record

from . import adaptive, service
from .models import EncryptionDecision, JobStatus, ReencryptionJob
from .phi import PhiModel

logger = logging.getLogger(__name__)

BATCH = 100
LEASE = dt.timedelta(seconds=120)
RETRIES = 3
OPEN = (JobStatus.PENDING, JobStatus.RUNNING)


class JobBusy(Exception):
    """Another worker holds the job's lease."""


@dataclass
class Counts:
    reencrypted: int = 0
    conflicts: int = 0
    failures: int = 0

    def add(self, other: Counts) -> None:
        self.reencrypted += other.reencrypted
        self.conflicts += other.conflicts
        self.failures += other.failures


def phi_models() -> list[type[PhiModel]]:
    """Every table that holds sealed values, in a fixed order (the job's visiting order)."""
    found = [m for m in apps.get_models() if issubclass(m, PhiModel) and not m._meta.abstract]
    return sorted(found, key=lambda m: m._meta.db_table)


def _boot_id() -> str:
    """This machine's boot (Linux); a process id means nothing across reboots."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip().replace("-", "")[:8]
    except OSError:
        return "nobootid"


def owner_name() -> str:
    """``host:pid:thread@boot`` (at most 64 characters, the column's size)."""
    host = socket.gethostname()[:30]
    return f"{host}:{os.getpid()}:{threading.get_ident() % 100000}@{_boot_id()}"


def holder_is_gone(owner: str) -> bool:
    """True when ``owner`` names a process of this host and boot that no longer runs: its lease
    protects nothing and may be taken over at once. Unknown owners (other hosts, other boots,
    old-style names) are never judged gone: their lease runs out instead."""
    host_pid, _, boot = owner.rpartition("@")
    parts = host_pid.split(":")
    if len(parts) != 3 or boot != _boot_id() or parts[0] != socket.gethostname()[:30]:
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False  # another thread of this process: alive by definition
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def open_job() -> ReencryptionJob | None:
    return ReencryptionJob.objects.filter(status__in=OPEN).order_by("-created_at", "-pk").first()


@transaction.atomic
def request_job(target: Suite, reason: str) -> ReencryptionJob:
    """A job that brings everything up to ``target``: the open one if it aims at least as high,
    else a new one (open jobs aiming lower are superseded: the new one covers them)."""
    for job in ReencryptionJob.objects.select_for_update().filter(status__in=OPEN):
        if Suite.parse(job.target_suite).level >= target.level:
            return job
        job.status = JobStatus.SUPERSEDED
        job.finished_at = timezone.now()
        job.lease_owner, job.lease_until = "", None
        job.save(update_fields=["status", "finished_at", "lease_owner", "lease_until"])
    total = sum(model._default_manager.count() for model in phi_models())
    return ReencryptionJob.objects.create(
        target_suite=target.label,
        reason=reason[:300],
        total=total,
        progress={model._meta.db_table: {"cursor": "", "done": False} for model in phi_models()},
    )


def _claim(job_id: int, owner: str) -> bool:
    now = timezone.now()
    claimed = (
        ReencryptionJob.objects.filter(pk=job_id, status__in=OPEN)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner))
        .update(lease_owner=owner, lease_until=now + LEASE, status=JobStatus.RUNNING)
    )
    if not claimed:
        holder = (
            ReencryptionJob.objects.filter(pk=job_id, status__in=OPEN)
            .values_list("lease_owner", flat=True)
            .first()
        )
        if holder and holder_is_gone(holder):
            # Compare-and-set on the dead holder's name: of two workers that both saw it dead,
            # one takes the job.
            claimed = ReencryptionJob.objects.filter(
                pk=job_id, status__in=OPEN, lease_owner=holder
            ).update(lease_owner=owner, lease_until=now + LEASE, status=JobStatus.RUNNING)
            if claimed:
                logger.info("re-encryption job %s taken over from dead %s", job_id, holder)
    if claimed:
        ReencryptionJob.objects.filter(pk=job_id, started_at__isnull=True).update(started_at=now)
    return bool(claimed)


def _reencrypt_row(model: type[PhiModel], row: PhiModel, target: Suite, reason: str) -> Counts:
    """Bring one row's sealed values (and its stored files) up to ``target``."""
    counts = Counts()
    table = model._meta.db_table
    for _attempt in range(RETRIES):
        patient_id = row.phi_patient_id()
        updates: dict[str, tuple[bytes, bytes]] = {}
        failed = 0
        for column in model.PHI_FIELDS:
            old = bytes(getattr(row, f"{column}_enc") or b"")
            if not old:
                continue
            try:
                if parse_header(old).suite.level >= target.level:
                    continue
                context = service.field_context(table, column, row.pk, patient_id)
                ring = service.keyring_for(patient_id, target)
                updates[column] = (old, ring.reencrypt(old, context, suite=target))
            except CryptoError:
                failed += 1  # tampered, or the patient's key was shredded: left as it is
        if not updates:
            counts.failures += failed
            break
        changed = model._default_manager.filter(
            pk=row.pk, **{f"{c}_enc": old for c, (old, _) in updates.items()}
        ).update(**{f"{c}_enc": new for c, (_, new) in updates.items()})
        faults.point("reencrypt.record")
        if changed:
            counts.reencrypted += len(updates)
            counts.failures += failed
            service.count_encryptions(patient_id, len(updates))
            adaptive.log_reencryption(table, row.pk, patient_id, target, reason)
            break
        fresh = model._default_manager.filter(pk=row.pk).first()
        if fresh is None:
            break  # deleted meanwhile: nothing left to protect
        row = fresh
    else:
        counts.conflicts += 1
    extra = row.reencrypt_attachments(target, reason)
    counts.add(Counts(*extra))
    return counts


def _batch(job: ReencryptionJob, target: Suite, batch: int) -> bool:
    """One batch of the first unfinished table, saved with the job's progress. False when every
    table is done."""
    for model in phi_models():
        table = model._meta.db_table
        state = job.progress.get(table) or {"cursor": "", "done": False}
        if state.get("done"):
            continue
        rows = model._default_manager.order_by("pk")
        if state.get("cursor"):
            rows = rows.filter(pk__gt=state["cursor"])
        chunk = list(rows[:batch])
        counts = Counts()
        with transaction.atomic():
            for row in chunk:
                counts.add(_reencrypt_row(model, row, target, job.reason))
            progress = dict(job.progress)
            progress[table] = {
                "cursor": str(chunk[-1].pk) if chunk else state.get("cursor", ""),
                "done": len(chunk) < batch,
            }
            kept = ReencryptionJob.objects.filter(
                pk=job.pk, lease_owner=job.lease_owner, status=JobStatus.RUNNING
            ).update(
                progress=progress,
                scanned=F("scanned") + len(chunk),
                reencrypted=F("reencrypted") + counts.reencrypted,
                conflicts=F("conflicts") + counts.conflicts,
                failures=F("failures") + counts.failures,
                lease_until=timezone.now() + LEASE,
            )
            if not kept:
                # The lease was lost (expired and taken, or the job was superseded): undo
                # this batch; whoever holds the job now does it.
                transaction.set_rollback(True)
                raise JobBusy(f"re-encryption job {job.pk} is no longer ours")
            faults.point("reencrypt.before-commit")
        faults.point("reencrypt.after-commit")
        job.progress = progress
        return True
    return False


def run(
    job_id: int,
    *,
    owner: str | None = None,
    batch: int = BATCH,
    max_batches: int | None = None,
    on_batch: Callable[[ReencryptionJob], None] | None = None,
) -> ReencryptionJob:
    """Work on the job until it is done (or ``max_batches`` batches); JobBusy if another worker
    holds it. Safe to kill at any moment and run again."""
    owner = owner or owner_name()
    if not _claim(job_id, owner):
        job = ReencryptionJob.objects.get(pk=job_id)
        if job.status not in OPEN:
            return job
        raise JobBusy(f"re-encryption job {job_id} is held by {job.lease_owner}")
    job = ReencryptionJob.objects.get(pk=job_id)
    target = Suite.parse(job.target_suite)
    done_batches = 0
    while max_batches is None or done_batches < max_batches:
        if not _batch(job, target, batch):
            _finish(job)
            break
        done_batches += 1
        if on_batch is not None:
            on_batch(ReencryptionJob.objects.get(pk=job_id))
    else:
        # Stopped early on purpose: let the next worker take over at once.
        ReencryptionJob.objects.filter(pk=job_id, lease_owner=owner).update(
            lease_owner="", lease_until=None
        )
    return ReencryptionJob.objects.get(pk=job_id)


def _finish(job: ReencryptionJob) -> None:
    with transaction.atomic():
        ReencryptionJob.objects.filter(pk=job.pk, lease_owner=job.lease_owner).update(
            status=JobStatus.DONE, finished_at=timezone.now(), lease_owner="", lease_until=None
        )
        done = ReencryptionJob.objects.get(pk=job.pk)
        record(
            "keys.reencrypt",
            outcome=Outcome.OK if done.failures == 0 else Outcome.FAILED,
            details={
                "job": done.pk,
                "suite": done.target_suite,
                "scanned": done.scanned,
                "reencrypted": done.reencrypted,
                "conflicts": done.conflicts,
                "failures": done.failures,
            },
        )


# -- in the background -----------------------------------------------------------------------------

# Who runs a job once the floor rose: the task queue (carevault.web.jobs registers itself here at
# start-up; this layer does not import it). None: only `carevault keys reencrypt` does.
_runner: Callable[[int], object] | None = None


def set_background_runner(runner: Callable[[int], object] | None) -> None:
    """Called with a job's id inside the transaction that requested it, when it should run in
    the background: the runner records the run in that transaction and queues it once the
    transaction commits (the task queue; its worker calls :func:`run`), so a crash between the
    two leaves a record the queue finds, never a job nobody knows should run."""
    global _runner
    _runner = runner


def escalate(target: Suite, reason: str) -> ReencryptionJob:
    """The floor rose to ``target``: make sure a job brings stored data up to it, handed to the
    background runner, which queues it once the caller's transaction commits (unless
    ``CAREVAULT_REENCRYPT_IN_BACKGROUND=0``: then `carevault keys reencrypt` runs it)."""
    with transaction.atomic():
        job = request_job(target, reason)
        if settings.REENCRYPT_IN_BACKGROUND and _runner is not None:
            _runner(job.pk)
    return job


def abandoned() -> list[ReencryptionJob]:
    """Open jobs no worker is on: lease expired, never taken, or held by a process of this
    machine that is gone (the ``reencrypt.pending`` task takes them up, e.g. one a killed
    `carevault keys reencrypt` left)."""
    at = timezone.now()
    return [
        job
        for job in ReencryptionJob.objects.filter(status__in=OPEN).order_by("created_at")
        if job.lease_until is None or job.lease_until < at or holder_is_gone(job.lease_owner)
    ]


def below(target: Suite) -> dict[str, Any]:
    """How many logged records sit below ``target``, per suite (for the dashboard)."""
    weaker = [s.label for s in Suite if s.level < target.level]
    rows = EncryptionDecision.objects.filter(suite__in=weaker)
    return {"count": rows.count(), "suites": weaker}
