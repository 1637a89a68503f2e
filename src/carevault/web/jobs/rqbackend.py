"""The Redis backend: ``django_tasks_rq``'s, with every job given retries, so that a job whose
worker died (RQ notices when the worker's heartbeat stops and cleans its started-job registry)
is queued again instead of failed (``CAREVAULT_TASKS_MAX_ATTEMPTS`` attempts in all)."""

from __future__ import annotations

from typing import Any

import django_rq
from django.conf import settings
from django_tasks import TaskResult
from django_tasks.base import Task
from django_tasks_rq.backend import RQBackend as BaseRQBackend
from rq.job import Job


class RQBackend(BaseRQBackend):
    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        result = super().enqueue(task, args, kwargs)
        queue = django_rq.get_queue(task.queue_name)
        # One field of the job's hash, set atomically: a worker that already took the job
        # rewrites nothing else. RQ reads retries_left only when the job fails or is abandoned.
        retries = max(0, int(settings.TASKS_MAX_ATTEMPTS) - 1)
        queue.connection.hset(Job.key_for(result.id), "retries_left", retries)
        return result
