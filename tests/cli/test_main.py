"""The installed `carevault` command: help, and a non-zero exit on bad usage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_installed_command_has_help_and_exits_non_zero_on_bad_usage(tmp_path):
    exe = Path(sys.executable).parent / "carevault"
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(tmp_path)}
    assert subprocess.run([exe, "keys", "--help"], capture_output=True, env=env).returncode == 0
    bad = subprocess.run([exe, "keys", "explode"], capture_output=True, env=env, text=True)
    assert bad.returncode != 0
    assert "invalid choice" in bad.stderr
