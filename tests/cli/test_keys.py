"""`carevault keys ...`: one-line errors, non-zero exits, --json, and the key lifecycle."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path

import pytest

from carevault import cli
from carevault.cli.keys import load_master
from carevault.crypto import Keyring, unwrap_keyring, wrap_keyring
from carevault.crypto.keystore import DirectoryKeyStore


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CAREVAULT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CAREVAULT_MASTER_KEY", raising=False)
    monkeypatch.delenv("CAREVAULT_MASTER_KEY_FILE", raising=False)
    monkeypatch.delenv("CAREVAULT_ENV", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_status_without_a_master_key_fails_in_one_line_saying_how_to_fix_it(data_dir, capsys):
    code, out, err = run(capsys, "keys", "status")
    assert code != 0
    assert out == ""
    assert err.count("\n") == 1
    assert "carevault keys init" in err


def test_keys_init_creates_an_owner_only_master_key_in_the_data_directory(data_dir, capsys):
    code, out, _ = run(capsys, "keys", "init", "--json")
    assert code == 0
    path = Path(json.loads(out)["created"])
    assert path.parent.parent == data_dir
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_interrupted_keys_rotate_is_shown_by_status_and_finished_at_the_same_version(
    data_dir, capsys, monkeypatch
):
    from carevault import faults

    run(capsys, "keys", "init")
    store = DirectoryKeyStore(data_dir / "keys" / "wrapped")
    for n in range(3):
        store.put(f"patient:{n}", wrap_keyring(Keyring.generate(f"patient:{n}"), load_master()))

    class Killed(Exception):
        pass

    def killed_after_the_first_swap(label: str) -> None:
        if label.endswith("after-swap"):
            raise Killed(label)

    monkeypatch.setattr(faults, "point", killed_after_the_first_swap)
    with pytest.raises(Killed):
        cli.main(["keys", "rotate"])
    monkeypatch.setattr(faults, "point", lambda label: None)
    capsys.readouterr()
    code, out, _ = run(capsys, "keys", "status", "--json")
    status = json.loads(out)
    assert (status["rotation_in_progress"], status["wrapped_under_old_versions"]) == (2, 2)
    code, out, _ = run(capsys, "keys", "rotate", "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["master_version"], report["resumed"], report["rewrapped"]) == (2, True, 2)
    status = json.loads(run(capsys, "keys", "status", "--json")[1])
    assert status["rotation_in_progress"] is None
    assert [v["version"] for v in status["master_versions"]] == [1, 2]


def test_keys_init_refuses_to_replace_an_existing_master_key(data_dir, capsys):
    run(capsys, "keys", "init")
    before = (data_dir / "keys" / "master.json").read_bytes()
    code, _, err = run(capsys, "keys", "init")
    assert code != 0
    assert "already exists" in err
    assert (data_dir / "keys" / "master.json").read_bytes() == before


def test_keys_rotate_rewraps_every_data_key_and_keeps_them_usable(data_dir, capsys):
    run(capsys, "keys", "init")
    master = load_master()
    store = DirectoryKeyStore(data_dir / "keys" / "wrapped")
    ring = Keyring.generate("patient:1")
    sealed = ring.encrypt(b"diagnosis", {"row": 1})
    store.put("patient:1", wrap_keyring(ring, master))

    code, out, _ = run(capsys, "keys", "rotate", "--json")
    assert code == 0
    report = json.loads(out)
    assert report == {
        "master_version": 2,
        "resumed": False,
        "rewrapped": 1,
        "already_current": 0,
        "failed": [],
        "changed_meanwhile": [],
        "complete": True,
    }
    rotated = load_master()
    assert rotated.is_current(store.get("patient:1"))
    assert (
        unwrap_keyring(store.get("patient:1"), rotated, "patient:1").decrypt(sealed, {"row": 1})
        == b"diagnosis"
    )

    code, out, _ = run(capsys, "keys", "status", "--json")
    status = json.loads(out)
    assert status["primary_version"] == 2
    assert status["wrapped_under_old_versions"] == 0
    assert [v["state"] for v in status["master_versions"]] == ["decrypt-only", "primary"]


def test_keys_rotate_refuses_a_master_key_from_the_environment(data_dir, capsys, monkeypatch):
    from carevault.crypto import EnvMasterKeyProvider

    monkeypatch.setenv("CAREVAULT_MASTER_KEY", EnvMasterKeyProvider.new_value())
    code, _, err = run(capsys, "keys", "rotate")
    assert code != 0
    assert "environment variable CAREVAULT_MASTER_KEY" in err


def test_split_then_recover_with_k_shares_on_stdin_restores_the_same_master(
    data_dir, capsys, monkeypatch
):
    run(capsys, "keys", "init")
    original = load_master()
    sealed = original.wrap(b"data key", {"keyring": "x"})
    code, out, _ = run(capsys, "keys", "split", "-k", "2", "-n", "3", "--json")
    assert code == 0
    shares = json.loads(out)["shares"]
    (data_dir / "keys" / "master.json").unlink()

    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{shares[2]}\n\n{shares[0]}\n"))
    code, _, err = run(capsys, "keys", "recover")
    assert code == 0, err
    assert load_master().unwrap(sealed, {"keyring": "x"}) == b"data key"


def test_recover_with_too_few_shares_fails_and_writes_nothing(data_dir, capsys, monkeypatch):
    run(capsys, "keys", "init")
    _, out, _ = run(capsys, "keys", "split", "-k", "3", "-n", "5", "--json")
    shares = json.loads(out)["shares"]
    (data_dir / "keys" / "master.json").unlink()

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(shares[:2])))
    code, _, err = run(capsys, "keys", "recover")
    assert code != 0
    assert "needs 3" in err
    assert not (data_dir / "keys" / "master.json").exists()


def test_split_rejects_an_impossible_threshold_with_a_clear_message(data_dir, capsys):
    run(capsys, "keys", "init")
    code, _, err = run(capsys, "keys", "split", "-k", "4", "-n", "3")
    assert code != 0
    assert "k <= n" in err
