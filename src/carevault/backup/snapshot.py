"""Taking a backup and putting it back: what goes in, and how each part is copied.

What a backup holds (``manifest.json`` lists every file with its size and SHA-256):

* ``database.sqlite3``: an online copy made with SQLite's backup API (a consistent snapshot
  while the servers keep writing), or ``database.pgdump``: ``pg_dump --format=custom``, one
  transaction-consistent snapshot of the PostgreSQL database named by ``DATABASE_URL``;
* ``data/...``: every file of the data directory except the database itself and the master
  key: the encrypted uploads, sealed models and their wrapped keys, the wrapped key material in
  ``keys/wrapped``, the encrypted outbox, the audit checkpoints (``audit/``), ...

Files are copied before *and* after the database snapshot (the union is kept), so a file the
snapshot names is in the backup even when a re-encryption replaced it while the backup ran.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import tarfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import carevault

from .archive import BackupError

SQLITE_NAME = "carevault.sqlite3"
MASTER_KEY_FILE = PurePosixPath("keys/master.json")
# Never in a backup: the database (copied through its own API), the master key, what is
# rebuilt on start (static files) and what is scratch (locks, half-written temporary files).
_SKIP_NAMES = {SQLITE_NAME, f"{SQLITE_NAME}-wal", f"{SQLITE_NAME}-shm", f"{SQLITE_NAME}-journal"}
_SKIP_DIRS = {"static", "backups"}
_COPY = 1 << 20


@dataclass
class Snapshot:
    """A staged snapshot: its tar archive and manifest."""

    tar_path: Path
    manifest: dict[str, Any]
    files: list[dict[str, Any]] = field(default_factory=list)


def database_kind(database_url: str) -> str:
    if not database_url:
        return "sqlite"
    scheme = database_url.split(":", 1)[0].lower()
    if scheme in ("postgres", "postgresql", "pgsql"):
        return "postgresql"
    raise BackupError(f"backups support SQLite and PostgreSQL, not {scheme!r} databases")


def _libpq_url(database_url: str) -> str:
    # libpq reads postgres:// and postgresql://; dj-database-url also takes pgsql://.
    scheme, rest = database_url.split(":", 1)
    return ("postgresql:" if scheme.lower() == "pgsql" else f"{scheme}:") + rest


def _sha256_copy(src: Path, dst: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_COPY):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as src:
        while chunk := src.read(_COPY):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def data_files(data_dir: Path, exclude: Iterable[Path] = ()) -> list[PurePosixPath]:
    """The data directory's files that belong in a backup, as relative paths."""
    excluded = {p.resolve() for p in exclude if p.exists()}
    found: list[PurePosixPath] = []
    for root, dirs, names in os.walk(data_dir):
        here = Path(root)
        rel_root = here.relative_to(data_dir)
        dirs[:] = sorted(
            d
            for d in dirs
            if not (rel_root == Path(".") and d in _SKIP_DIRS)
            and not d.startswith(".cvbackup")
            and (here / d).resolve() not in excluded
        )
        for name in sorted(names):
            path = here / name
            rel = PurePosixPath(rel_root.as_posix()) / name
            if rel_root == Path(".") and name in _SKIP_NAMES:
                continue
            if rel == MASTER_KEY_FILE or name == ".lock" or name.endswith(".part"):
                continue
            if path.is_symlink() or not path.is_file() or path.resolve() in excluded:
                continue
            found.append(rel)
    return found


def _sqlite_snapshot(source: Path, dest: Path) -> str:
    if not source.exists():
        raise BackupError(f"there is no database at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(dest)
    try:
        # One consistent copy while writers continue (they wait at most for one page step).
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return f"SQLite {sqlite3.sqlite_version}"


def _pg_dump(database_url: str, dest: Path) -> str:
    run = _tool(
        "pg_dump",
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        f"--file={dest}",
        f"--dbname={_libpq_url(database_url)}",
    )
    if run.returncode != 0:
        raise BackupError(f"pg_dump failed: {_first_line(run.stderr)}")
    return _tool("pg_dump", "--version").stdout.strip()


def _tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL client tool, found on PATH, with a fixed argument list (no shell)."""
    exe = shutil.which(name)
    if exe is None:
        raise BackupError(f"{name} is not installed: it is needed for PostgreSQL backups")
    return subprocess.run(  # noqa: S603 - our fixed arguments, no shell
        [exe, *args], capture_output=True, text=True, check=False
    )


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def take(
    data_dir: Path,
    database_url: str,
    staging: Path,
    *,
    master_versions: list[int],
    exclude: Iterable[Path] = (),
) -> Snapshot:
    """Stage a snapshot of the deployment in ``staging`` (a private directory) as a tar."""
    kind = database_kind(database_url)
    backup_id = uuid.uuid4().hex
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    copied = staging / "data"
    exclude = list(exclude)
    files: dict[str, dict[str, Any]] = {}

    def copy_pass() -> None:
        for rel in data_files(data_dir, exclude):
            key = rel.as_posix()
            if key in files:
                continue
            try:
                digest, size = _sha256_copy(data_dir / rel, copied / rel)
            except FileNotFoundError:
                continue  # removed meanwhile (a replaced upload); the second pass decides
            files[key] = {"path": key, "bytes": size, "sha256": digest}

    copy_pass()
    db_name = "database.sqlite3" if kind == "sqlite" else "database.pgdump"
    db_path = staging / db_name
    if kind == "sqlite":
        db_version = _sqlite_snapshot(data_dir / SQLITE_NAME, db_path)
    else:
        db_version = _pg_dump(database_url, db_path)
    copy_pass()
    db_digest, db_size = sha256_file(db_path)
    manifest: dict[str, Any] = {
        "format": 1,
        "backup_id": backup_id,
        "created_at": created,
        "database": {"kind": kind, "file": db_name, "bytes": db_size, "sha256": db_digest},
        "files": sorted(files.values(), key=lambda f: f["path"]),
        "master_versions": master_versions,
        "versions": {
            "carevault": carevault.__version__,
            "python": platform.python_version(),
            "database": db_version,
        },
    }
    (staging / "manifest.json").write_bytes(json.dumps(manifest, indent=1).encode())
    tar_path = staging / "backup.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(staging / "manifest.json", arcname="manifest.json", recursive=False)
        tar.add(db_path, arcname=db_name, recursive=False)
        for entry in manifest["files"]:
            tar.add(copied / entry["path"], arcname=f"data/{entry['path']}", recursive=False)
    return Snapshot(tar_path, manifest, manifest["files"])


# -- reading a decrypted body ---------------------------------------------------------------------


def _safe_member(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise BackupError(f"the backup holds an unsafe path ({name!r})")
    return path


def scan(
    stream: BinaryIO, *, keep: set[str]
) -> tuple[dict[str, tuple[str, int]], dict[str, bytes]]:
    """Read a tar stream: every member's (SHA-256, size), and the bytes of those in ``keep``."""
    found: dict[str, tuple[str, int]] = {}
    kept: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                _safe_member(member.name)
                if not member.isfile():
                    raise BackupError(f"the backup holds a non-file entry ({member.name!r})")
                if member.name in found:
                    raise BackupError("the backup's archive is malformed (duplicate entries)")
                content = tar.extractfile(member)
                assert content is not None  # a regular file
                digest, size = hashlib.sha256(), 0
                keeping = member.name in keep
                held = bytearray()
                while chunk := content.read(_COPY):
                    digest.update(chunk)
                    size += len(chunk)
                    if keeping:
                        held += chunk
                found[member.name] = (digest.hexdigest(), size)
                if keeping:
                    kept[member.name] = bytes(held)
    except tarfile.TarError:
        raise BackupError("the backup's archive is malformed") from None
    return found, kept


def check_manifest(found: dict[str, tuple[str, int]], raw: bytes | None) -> dict[str, Any]:
    """The manifest, once every member matches it and nothing is missing or extra."""
    if raw is None:
        raise BackupError("the backup's archive is malformed (no manifest)")
    try:
        manifest = json.loads(raw)
        db = manifest["database"]
        expected = {db["file"]: (db["sha256"], db["bytes"])}
        for entry in manifest["files"]:
            expected[f"data/{entry['path']}"] = (entry["sha256"], entry["bytes"])
    except (KeyError, TypeError, ValueError):
        raise BackupError("the backup's manifest is malformed") from None
    present = {name: facts for name, facts in found.items() if name != "manifest.json"}
    if set(present) != set(expected):
        raise BackupError("the backup's files do not match its manifest (missing or extra files)")
    for name, facts in present.items():
        if facts != tuple(expected[name]):
            raise BackupError(f"{name} does not match the manifest's SHA-256")
    return dict(manifest)


def unpack(tar_path: Path, dest: Path) -> dict[str, Any]:
    """Extract a decrypted body into ``dest`` and check it against its manifest; the manifest.

    Every file must be listed, regular, and match its size and SHA-256; nothing may be missing
    or extra."""
    try:
        with tarfile.open(tar_path, "r:") as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            if len(set(names)) != len(names):
                raise BackupError("the backup's archive is malformed (duplicate entries)")
            for member in members:
                _safe_member(member.name)
                if not member.isfile():
                    raise BackupError(f"the backup holds a non-file entry ({member.name!r})")
            tar.extractall(dest, filter="data")
    except tarfile.TarError:
        raise BackupError("the backup's archive is malformed") from None
    found = {name: sha256_file(dest / name) for name in names}
    raw = (dest / "manifest.json").read_bytes() if "manifest.json" in found else None
    return check_manifest(found, raw)


# -- putting a database back ----------------------------------------------------------------------


def _psql(database_url: str, sql: str) -> str:
    run = _tool(
        "psql", "--no-psqlrc", "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql, _libpq_url(database_url)
    )
    if run.returncode != 0:
        raise BackupError(f"cannot reach the target database: {_first_line(run.stderr)}")
    return run.stdout.strip()


def check_empty_postgres(database_url: str) -> None:
    tables = _psql(
        database_url,
        "select count(*) from pg_tables"
        " where schemaname not in ('pg_catalog', 'information_schema')",
    )
    if tables != "0":
        raise BackupError("the target database is not empty: restore only into an empty database")


def restore_postgres(dump: Path, database_url: str) -> None:
    """``pg_restore`` in one transaction: the database gets all of it or none of it."""
    run = _tool(
        "pg_restore",
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
        f"--dbname={_libpq_url(database_url)}",
        str(dump),
    )
    if run.returncode != 0:
        raise BackupError(f"pg_restore failed: {_first_line(run.stderr)}")
