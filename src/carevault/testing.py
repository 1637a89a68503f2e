"""pytest plugin (loaded with ``-p carevault.testing`` before pytest-django reads the settings):
every test run gets its own data directory (keys, database, uploads), so a run never touches a
developer's ``var/`` and two runs never touch each other."""

from __future__ import annotations

import os
import tempfile

os.environ["CAREVAULT_DATA_DIR"] = tempfile.mkdtemp(prefix="carevault-test-")
# Tests run re-encryption jobs explicitly: a background thread would not see a test's
# uncommitted rows (and would outlive the test).
os.environ["CAREVAULT_REENCRYPT_IN_BACKGROUND"] = "0"
# Tasks run in the process that queues them, after its commit (a test that tests the queue itself
# asks for the database backend: tests/web/jobs).
os.environ.setdefault("CAREVAULT_TASKS", "immediate")
for _name in ("CAREVAULT_MASTER_KEY", "CAREVAULT_MASTER_KEY_FILE", "CAREVAULT_ENV"):
    os.environ.pop(_name, None)
# Events are scored on the request in tests unless a test asks for background scoring (the
# `background_scoring` fixture, which drains deterministically): a scorer thread would not see a
# test's uncommitted rows.
os.environ.setdefault("CAREVAULT_SECURITY_SCORING", "inline")
