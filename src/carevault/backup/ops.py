"""Create, verify and restore backups (no Django: the command line calls these directly).

Restore is all or nothing for the data directory: everything is checked (signature, signer,
master key, decryption, every file's SHA-256) and unpacked into a private directory beside the
target, which is renamed into place only at the end. A PostgreSQL restore runs in one
transaction into a database that must be empty.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carevault.crypto import CryptoError, KeyEncryptionKey, MasterKey
from carevault.crypto.keystore import DirectoryKeyStore, key_file_name

from . import archive, signer, snapshot
from .archive import SUFFIX, BackupError
from .retention import apply_keep, wrapping_version

SIGNER_STORE = Path("keys") / "wrapped"


@dataclass
class Created:
    path: Path
    header: dict[str, Any]
    manifest: dict[str, Any]
    seconds: float
    removed: list[Path]


@dataclass
class Verified:
    path: Path
    header: dict[str, Any]
    manifest: dict[str, Any]


_WORK_PREFIXES = (".cvbackup-staging-", ".cvbackup-verify-", ".cvbackup-open-")
_HELD = ".held"
_FRESH_SECONDS = 60
_STALE_PART_SECONDS = 3600


@contextlib.contextmanager
def _private_dir(beside: Path, prefix: str) -> Iterator[Path]:
    """A private (0700) work directory, held by a lock for as long as this process uses it.

    Staged snapshots are not yet encrypted, so one left by a killed process must not linger:
    each work directory holds a lock, and :func:`sweep` removes those whose lock is free."""
    beside.mkdir(parents=True, exist_ok=True)
    sweep(beside)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=beside))
    held = open(path / _HELD, "wb")  # noqa: SIM115 - held until the directory is removed
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        held.close()


def sweep(directory: Path) -> list[Path]:
    """Remove work directories left by killed processes (their lock is free); returns them."""
    removed = []
    for path in directory.iterdir() if directory.is_dir() else []:
        name = path.name
        if (
            path.is_file()
            and name.startswith(".")
            and SUFFIX + "." in name
            and name.endswith(".part")
        ):
            # A killed backup's half-written file (encrypted, but useless); a live writer
            # touches its file continuously, so an hour without a write means it is dead.
            if time.time() - path.stat().st_mtime > _STALE_PART_SECONDS:
                path.unlink(missing_ok=True)
                removed.append(path)
            continue
        if not path.is_dir() or not (name.startswith(_WORK_PREFIXES) or ".restoring-" in name):
            continue
        if time.time() - path.stat().st_mtime < _FRESH_SECONDS:
            continue  # may be between its creation and its lock
        try:
            with open(path / _HELD, "rb") as held:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except FileNotFoundError:
            continue  # just being created, or not ours
        except BlockingIOError:
            continue  # a live process is using it
    return removed


def master_versions(kek: KeyEncryptionKey) -> list[int]:
    if isinstance(kek, MasterKey):
        return [info.version for info in kek.keyring.versions()]
    return []


def destination(path: Path, now: dt.datetime | None = None) -> Path:
    """A directory (existing, or written with a trailing slash) gets a timestamped name."""
    if path.is_dir() or str(path).endswith(os.sep):
        stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S%fZ")
        return path / f"carevault-{stamp}{SUFFIX}"
    if not path.name.endswith(SUFFIX):
        raise BackupError(f"a backup file's name must end in {SUFFIX} (got {path.name})")
    return path


def create(
    path: Path,
    *,
    data_dir: Path,
    database_url: str,
    kek: KeyEncryptionKey,
    keep: int | None = None,
) -> Created:
    started = time.monotonic()
    dest = destination(path)
    if dest.exists():
        raise BackupError(f"{dest} exists already: a backup never overwrites another")
    signing = signer.load(DirectoryKeyStore(data_dir / SIGNER_STORE), kek, create=True)
    assert signing is not None
    with _private_dir(dest.parent, ".cvbackup-staging-") as staging:
        snap = snapshot.take(
            data_dir,
            database_url,
            staging,
            master_versions=master_versions(kek),
            exclude=[dest.parent],
        )
        manifest = snap.manifest
        header = {
            "backup_id": manifest["backup_id"],
            "created_at": manifest["created_at"],
            "database": manifest["database"]["kind"],
            "files": len(manifest["files"]),
            "master_versions": manifest["master_versions"],
            "carevault": manifest["versions"]["carevault"],
        }
        header = archive.write(dest, snap.tar_path, header, kek, signing)
    removed: list[Path] = []
    if keep is not None:
        removed = apply_keep(dest.parent, keep)
    return Created(dest, header, manifest, time.monotonic() - started, removed)


def _check_signer(layout: archive.Layout, data_dir: Path | None, kek: KeyEncryptionKey) -> None:
    """The header's signer must be this server's backup key, when this server has one."""
    if data_dir is None:
        return
    own = signer.load_from(data_dir / SIGNER_STORE, kek)
    if own is None:
        return
    named = archive.signer_of(layout)
    if named.public_bytes() != own.verify_key.public_bytes():
        raise BackupError(
            "the backup was signed by another server's key: refusing a foreign backup"
        )


def _check_inner_signer(unpacked: Path, layout: archive.Layout, kek: KeyEncryptionKey) -> None:
    """On a new machine: the signing key inside the backup must open with this master key and
    be the key that signed it (so a stranger cannot sign a backup of their own making)."""
    inner = signer.load_from(unpacked / "data" / SIGNER_STORE, kek)
    if inner is None:
        raise BackupError("the backup holds no signing key of this deployment: refusing it")
    named = archive.signer_of(layout)
    if named.public_bytes() != inner.verify_key.public_bytes():
        raise BackupError(
            "the backup was signed by another server's key: refusing a foreign backup"
        )


def _open(
    path: Path, work: Path, kek: KeyEncryptionKey, data_dir: Path | None
) -> tuple[archive.Layout, dict[str, Any], Path]:
    layout = archive.read_layout(path)
    archive.check_signature(path, layout)
    _check_signer(layout, data_dir, kek)
    tar_path = work / "body.tar"
    archive.decrypt_body(path, layout, kek, tar_path)
    unpacked = work / "unpacked"
    unpacked.mkdir(mode=0o700)
    manifest = snapshot.unpack(tar_path, unpacked)
    archive.remove_quietly(tar_path)
    if manifest.get("backup_id") != layout.header.get("backup_id"):
        raise BackupError(f"{path.name}: the manifest belongs to another backup")
    _check_inner_signer(unpacked, layout, kek)
    return layout, manifest, unpacked


def verify(path: Path, *, kek: KeyEncryptionKey, data_dir: Path | None) -> Verified:
    """Every check a restore makes, without restoring anything (and without writing anything:
    backups may sit on read-only media)."""
    if not path.is_file():
        raise BackupError(f"no backup at {path}")
    layout = archive.read_layout(path)
    archive.check_signature(path, layout)
    _check_signer(layout, data_dir, kek)
    # Streamed: the decrypted archive is hashed as it is read, never written to disk.
    signer_member = f"data/{SIGNER_STORE.as_posix()}/{_signer_file_name()}"
    try:
        with archive.body_stream(path, layout, kek) as body:
            found, kept = snapshot.scan(body, keep={"manifest.json", signer_member})
            while body.read(1 << 20):
                pass  # the last chunk authenticates only at the very end
    except CryptoError:
        raise BackupError(f"{path.name} does not decrypt: damaged or tampered with") from None
    manifest = snapshot.check_manifest(found, kept.get("manifest.json"))
    if manifest.get("backup_id") != layout.header.get("backup_id"):
        raise BackupError(f"{path.name}: the manifest belongs to another backup")
    if signer_member not in kept:
        raise BackupError("the backup holds no signing key of this deployment: refusing it")
    inner = signer.from_blob(kept[signer_member], kek)
    if archive.signer_of(layout).public_bytes() != inner.verify_key.public_bytes():
        raise BackupError(
            "the backup was signed by another server's key: refusing a foreign backup"
        )
    return Verified(path, layout.header, manifest)


def _signer_file_name() -> str:
    return key_file_name(signer.NAME)


@contextlib.contextmanager
def opened(
    path: Path, *, kek: KeyEncryptionKey, data_dir: Path | None, work_beside: Path
) -> Iterator[tuple[dict[str, Any], Path]]:
    """A verified backup unpacked in a private directory (removed afterwards)."""
    if not path.is_file():
        raise BackupError(f"no backup at {path}")
    with _private_dir(work_beside, ".cvbackup-open-") as work:
        _layout, manifest, unpacked = _open(path, work, kek, data_dir)
        yield manifest, unpacked


def _owner_only(root: Path) -> None:
    """A restored data directory is readable by its owner only, like the original."""
    os.chmod(root, 0o700)
    for here, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(here) / name, 0o700)
        for name in files:
            os.chmod(Path(here) / name, 0o600)


def _target_is_empty(target: Path) -> bool:
    return not target.exists() or (target.is_dir() and not any(target.iterdir()))


def restore(
    path: Path,
    *,
    target: Path,
    database_url: str,
    kek: KeyEncryptionKey,
    current_data_dir: Path | None = None,
) -> Verified:
    """Restore into an empty data directory ``target`` (and an empty database for PostgreSQL)."""
    if not path.is_file():
        raise BackupError(f"no backup at {path}")
    target = target.absolute()
    if not _target_is_empty(target):
        raise BackupError(f"{target} is not empty: restore only into an empty data directory")
    parent = target.parent
    with _private_dir(parent, f".{target.name}.restoring-") as work:
        layout, manifest, unpacked = _open(path, work, kek, current_data_dir)
        kind = manifest["database"]["kind"]
        if kind == "postgresql" and not database_url:
            raise BackupError(
                "this is a PostgreSQL backup: give --database-url of an empty database"
            )
        if kind == "sqlite" and database_url:
            raise BackupError(
                "this is a SQLite backup: it restores into the data directory, not a URL"
            )
        staged = unpacked / "data"
        staged.mkdir(exist_ok=True)
        _owner_only(staged)
        if kind == "sqlite":
            db_file = staged / snapshot.SQLITE_NAME
            os.replace(unpacked / "database.sqlite3", db_file)
            os.chmod(db_file, 0o600)
        else:
            snapshot.check_empty_postgres(database_url)
        if not _target_is_empty(target):
            raise BackupError(f"{target} is no longer empty: nothing restored")
        if kind == "postgresql":
            snapshot.restore_postgres(unpacked / "database.pgdump", database_url)
        if target.exists():
            target.rmdir()
        os.rename(staged, target)
    return Verified(path, layout.header, manifest)


def describe(header: dict[str, Any]) -> str:
    signer_facts = header.get("signer", {})
    version = wrapping_version(header)
    return (
        f"backup {header.get('backup_id')} of {header.get('created_at')} "
        f"({header.get('database')}, {header.get('files')} files), "
        f"key wrapped by master v{version}, signed by {signer_facts.get('key_id')}"
    )
