"""The diagnosis models' high-water marks are anchored outside the model directory: a fresh
process refuses an older ``high-water.enc`` replayed together with the older model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from carevault import cli

EXE = Path(sys.executable).parent / "carevault"
LOGISTIC = "diagnosis-logistic"


def _fresh_verify(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAREVAULT_DATA_DIR": str(data_dir)}
    for name in ("CAREVAULT_MASTER_KEY", "CAREVAULT_MASTER_KEY_FILE", "CAREVAULT_ENV"):
        env.pop(name, None)
    env.pop("CAREVAULT_AUDIT_ANCHOR_FILE", None)
    return subprocess.run(
        [EXE, "model", "verify", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_a_replayed_older_mark_and_model_are_refused_by_a_fresh_process(
    tmp_path, monkeypatch, capsys
):
    data = tmp_path / "data"
    monkeypatch.setenv("CAREVAULT_DATA_DIR", str(data))
    for name in ("CAREVAULT_MASTER_KEY", "CAREVAULT_MASTER_KEY_FILE", "CAREVAULT_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CAREVAULT_AUDIT_ANCHOR_FILE", raising=False)
    assert cli.main(["model", "train", "--json"]) == 0
    snapshot = tmp_path / "v1"
    shutil.copytree(data / "models" / LOGISTIC, snapshot)
    assert cli.main(["model", "train", "--json"]) == 0
    capsys.readouterr()
    assert _fresh_verify(data).returncode == 0

    shutil.rmtree(data / "models" / LOGISTIC)
    shutil.copytree(snapshot, data / "models" / LOGISTIC)  # the older record and model
    result = _fresh_verify(data)
    assert result.returncode != 0
    report = json.loads(result.stdout)
    logistic = next(m for m in report["models"] if m["model"] == LOGISTIC)
    assert logistic["ok"] is False
    assert logistic["current_version"] is None
    assert any(
        "record says v1 but the signed checkpoint" in error for error in logistic["errors"]
    ), logistic["errors"]


def test_removing_the_checkpoint_file_is_refused_by_a_fresh_process(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    monkeypatch.setenv("CAREVAULT_DATA_DIR", str(data))
    for name in ("CAREVAULT_MASTER_KEY", "CAREVAULT_MASTER_KEY_FILE", "CAREVAULT_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CAREVAULT_AUDIT_ANCHOR_FILE", raising=False)
    assert cli.main(["model", "train", "--json"]) == 0
    capsys.readouterr()
    (data / "audit" / "checkpoints.jsonl").unlink()
    result = _fresh_verify(data)
    assert result.returncode != 0
    assert "although checkpoints were written" in result.stdout
