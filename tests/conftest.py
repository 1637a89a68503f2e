"""Every test run gets its own data directory (keys, database, uploads), so a run never touches
a developer's `var/` and two runs never touch each other."""

from __future__ import annotations

import os
import tempfile

# Set before Django reads its settings (pytest-django imports them after conftest is loaded).
os.environ["CAREVAULT_DATA_DIR"] = tempfile.mkdtemp(prefix="carevault-test-")
os.environ.pop("CAREVAULT_MASTER_KEY", None)
os.environ.pop("CAREVAULT_MASTER_KEY_FILE", None)
os.environ.pop("CAREVAULT_ENV", None)
