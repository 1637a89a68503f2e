"""The clinic-day recorder end to end: a fresh server, Chromium, the short day, the log.

It runs as its own process (``carevault security record-day --short``): the recorder builds its
clinic in a data directory of its own and sets Django up on it, which the test process, already
set up on the test database, cannot do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from carevault.security import clinic_day
from carevault.security.events import EventKind

pytestmark = [pytest.mark.browser, pytest.mark.django_db]


def test_the_short_day_is_recorded_from_the_real_server_as_a_replayable_log(
    tmp_path: Path,
) -> None:
    out = tmp_path / "day.jsonl"
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(tmp_path / "data")}
    src = Path(clinic_day.__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    argv = [sys.executable, "-m", "carevault.cli", "security", "record-day", "--short"]
    done = subprocess.run(
        [*argv, "--out", str(out), "--keep", str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    events = clinic_day.read(out)
    kinds = {e.kind for e in events}
    assert {EventKind.LOGIN_SUCCESS, EventKind.LOGIN_FAILURE, EventKind.PHI_READ} <= kinds
    assert EventKind.UPLOAD in kinds
    # The e-mail typed as a username names no account: it is kept as a keyed hash, never text.
    assert any(e.actor.startswith("?") for e in events)
    assert not any("@" in e.actor for e in events)
    # Two doctors signed in on one ward workstation: one address, one browser.
    ward = {e.actor for e in events if e.address == "10.20.1.15" and e.role == "doctor"}
    assert len(ward) >= 2
    assert [e.at for e in events] == sorted(e.at for e in events)
