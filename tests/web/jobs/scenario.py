"""Steps of the kill test, each run as ``python scenario.py STEP`` in the test's data directory
(a real process on a real database file, as `carevault worker` sees it)."""

from __future__ import annotations

import json
import os
import sys

import django


def prepare(patients: int) -> None:
    """Weak data (everything under AES-128-GCM), a snapshot of every plaintext's digest, and a
    raised floor whose re-encryption job is queued for the worker."""
    from django.db import transaction

    from carevault.bench import killsafety
    from carevault.crypto import Suite
    from carevault.web.jobs.models import JobRun
    from carevault.web.vault import reencrypt

    killsafety._populate(patients)
    killsafety._downgrade()
    snapshot = killsafety._snapshot()
    with transaction.atomic():
        job = reencrypt.escalate(Suite.AES_256_GCM, "kill test")
    run = JobRun.objects.get(kind="reencrypt.job", params__job_id=job.pk)
    print(json.dumps({"run": run.pk, "job": job.pk, "snapshot": snapshot}))


def check() -> None:
    """Every value and file decrypts to what it held, and nothing is left below the floor."""
    from carevault.bench import killsafety
    from carevault.crypto import Suite, parse_header
    from carevault.web.labs import storage
    from carevault.web.labs.models import LabFile
    from carevault.web.vault import reencrypt

    below = 0
    for model in reencrypt.phi_models():
        for row in model._default_manager.all():
            for column in model.PHI_FIELDS:
                value = bytes(getattr(row, f"{column}_enc") or b"")
                if value and parse_header(value).suite.level < Suite.AES_256_GCM.level:
                    below += 1
    weak_files = sum(
        1
        for f in LabFile.objects.all()
        if storage.sealing_suite(f.storage_name) is not Suite.AES_256_GCM
    )
    print(
        json.dumps({"snapshot": killsafety._snapshot(), "below": below, "weak_files": weak_files})
    )


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "carevault.web.settings")
    django.setup()
    if sys.argv[1] == "prepare":
        prepare(int(sys.argv[2]))
    else:
        check()
