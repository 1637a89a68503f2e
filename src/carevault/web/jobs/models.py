"""What the officer pages read about background work: one :class:`JobRun` per enqueued task
(its progress, state, attempts, and an error summary that never carries PHI), and one
:class:`WorkerBeat` per running worker (how a dead worker is told from a slow one)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


OPEN_STATES = (JobState.QUEUED, JobState.RUNNING)


class JobRun(models.Model):
    kind = models.CharField(max_length=64)
    # Arguments of the task: identifiers only (job ids, patient ids), never PHI.
    params = models.JSONField(default=dict, blank=True)
    # The queue backend's id for the task (a UUID in the database backend, an RQ job id).
    task_id = models.CharField(max_length=64, blank=True, db_index=True)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    done = models.PositiveBigIntegerField(default=0)
    total = models.PositiveBigIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=64, blank=True)
    # A short summary: the error's class and a message written by this code, never a value.
    error = models.CharField(max_length=200, blank=True)
    summary = models.CharField(max_length=200, blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    enqueued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    beat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-enqueued_at", "-pk"]
        indexes = [models.Index(fields=["kind", "state"])]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.state})"

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return min(100, int(100 * self.done / self.total))

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


class WorkerBeat(models.Model):
    """A running worker: written at start and every few seconds by a thread of the worker."""

    worker_id = models.CharField(max_length=64, primary_key=True)
    backend = models.CharField(max_length=16)
    queues = models.CharField(max_length=200)
    started_at = models.DateTimeField(default=timezone.now)
    beat_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.worker_id
