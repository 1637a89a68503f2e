"""Background work as tasks (issue 16): re-encryption, patient key rotation, retraining, audit
sealing, backups, each a task on Django's Tasks API whose progress the officer pages read.

* :mod:`.registry`: ``enqueue(kind, ...)`` (after the caller's commit) and the ``tracked``
  wrapper that records each run in :class:`.models.JobRun`;
* :mod:`.tasks`: the tasks themselves, idempotent and resumable;
* :mod:`.recovery`: worker heartbeats, and the hand-over of a dead worker's task;
* :mod:`.worker`: the worker loop ``carevault worker`` runs (database or RQ).
"""
