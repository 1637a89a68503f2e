"""Deterministic fault injection for the key jobs (issue 13): ``CAREVAULT_FAULT_KILL_AFTER=N``
makes the process SIGKILL itself at the N-th unit of work a key job reaches (a record, a file, a
wrapped key, an outbox message, a commit boundary), so a test can stop ``keys rotate`` or
``keys reencrypt`` at every instant that matters, quickly and reproducibly.

Unset (the normal case), :func:`point` is one dictionary lookup. Nothing here is a switch an
attacker gains from: whoever can set a server's environment can kill its processes anyway.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading

ENV_KILL_AFTER = "CAREVAULT_FAULT_KILL_AFTER"
# Where the label of the point that killed the process is written (so a harness can report
# which kinds of instants it covered); optional.
ENV_KILL_NOTE = "CAREVAULT_FAULT_NOTE"
# Where a run that was not killed writes how many points it passed (to pick kill points from).
ENV_COUNT_FILE = "CAREVAULT_FAULT_COUNT_FILE"

_lock = threading.Lock()
_reached = 0
_labels: list[str] = []


def point(label: str) -> None:
    """One unit of work reached; dies here (SIGKILL, no cleanup) if it is the chosen one."""
    global _reached
    wanted = os.environ.get(ENV_KILL_AFTER, "")
    if not wanted:
        return
    with _lock:
        _reached += 1
        reached = _reached
        _labels.append(label)
        if reached == 1 and os.environ.get(ENV_COUNT_FILE):
            atexit.register(_write_count)
    if reached >= int(wanted):
        note = os.environ.get(ENV_KILL_NOTE, "")
        if note:
            with open(note, "w", encoding="utf-8") as handle:
                handle.write(label)
        os.kill(os.getpid(), signal.SIGKILL)


def _write_count() -> None:
    with open(os.environ[ENV_COUNT_FILE], "w", encoding="utf-8") as handle:
        handle.write(str(_reached))


def reached() -> list[str]:
    """The points this process has passed, in order (a harness runs a job once unkilled to
    learn which kill points there are)."""
    with _lock:
        return list(_labels)
