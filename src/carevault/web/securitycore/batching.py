"""The end of every request (the security middleware calls :func:`after_request` once the
response is built): a batch of the events this process deferred, the request's latency and a
host sample for telemetry. (Abandoned re-encryption jobs are the task queue's now:
:mod:`carevault.web.jobs` hands a dead worker's task to the next worker.)"""

from __future__ import annotations

import logging
import time

from django.conf import settings

from carevault.security.telemetry import HostSampler

from .runtime import runtime
from .scoring import observe_event, score_pending

logger = logging.getLogger("carevault.security")

BATCH_EVERY_SECONDS = 10.0


def after_request(elapsed_ms: float) -> None:
    """Report the request's latency; take a host sample when one is due; score a batch of
    deferred events when this process deferred some (at most every BATCH_EVERY_SECONDS, after
    the response is built). Never raises."""
    if not settings.SECURITY_EVENTS:
        return
    try:
        rt = runtime()
        if rt.deferred and time.monotonic() - rt.last_batch >= BATCH_EVERY_SECONDS:
            rt.deferred, rt.last_batch = 0, time.monotonic()
            score_pending()
    except Exception:
        logger.exception("batch scoring failed")
    interval = int(settings.SECURITY_TELEMETRY_SECONDS)
    if interval <= 0:
        return
    try:
        rt = runtime()
        rt.latency.add(elapsed_ms)
        with rt.lock:
            if rt.sampler is None:
                rt.sampler = HostSampler(rt.latency)
            sampler = rt.sampler
        sample = sampler.take_if_due(interval)
        if sample is not None:
            rt.last_host = sample
            observe_event(sample.to_event())
    except Exception:
        logger.exception("host telemetry failed")
