"""``carevault backup create | verify | restore | list | check | recover`` (docs/operations.md
"Backup and restore"). Every refusal is one line on stderr and exit status 1. Backup headers and
manifests hold dates and paths: ``--json`` writes them as text (``default=str``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from carevault import config
from carevault.backup import ops, retention
from carevault.backup.archive import BackupError
from carevault.cli._common import EXIT_FAILURE, Commands, Handler, add_command, emit
from carevault.cli._django import django_setup
from carevault.crypto import CryptoError, KeyEncryptionKey


def _kek() -> KeyEncryptionKey:
    provider = config.master_key_provider()
    exists = getattr(provider, "exists", None)
    if callable(exists) and not exists():
        raise BackupError(
            f"no master key at {getattr(provider, 'path', '?')}: set CAREVAULT_MASTER_KEY_FILE "
            "(or recover it from its shares with `carevault keys recover`)"
        )
    return provider.load()


def _database_url() -> str:
    return os.environ.get("DATABASE_URL", "").strip()


def _existing_data_dir() -> Path | None:
    path = config.data_dir()
    return path if path.is_dir() else None


def cmd_create(args: argparse.Namespace) -> int:
    made = ops.create(
        Path(args.path),
        data_dir=config.data_dir(),
        database_url=_database_url(),
        kek=_kek(),
        keep=args.keep,
    )
    size = made.path.stat().st_size
    data = {
        "path": str(made.path),
        "bytes": size,
        "seconds": round(made.seconds, 3),
        "backup_id": made.header["backup_id"],
        "database": made.header["database"],
        "files": len(made.manifest["files"]),
        "removed": [str(p) for p in made.removed],
    }
    lines = [
        f"backup written: {made.path} ({size:,} bytes, {made.seconds:.2f} s)",
        ops.describe(made.header),
    ] + [f"removed (retention): {p}" for p in made.removed]
    emit(args, data, "\n".join(lines), default=str)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    checked = ops.verify(Path(args.path), kek=_kek(), data_dir=_existing_data_dir())
    data = {"ok": True, "header": checked.header, "files": len(checked.manifest["files"])}
    text = (
        f"backup OK: signature, decryption and {len(checked.manifest['files']) + 1} file "
        f"digests verified\n{ops.describe(checked.header)}"
    )
    emit(args, data, text, default=str)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    url = args.database_url if args.database_url is not None else ""
    target = Path(args.data_dir)
    current = _existing_data_dir()
    if current is not None and current.absolute() == target.absolute():
        current = None  # restoring into the configured directory: it holds no key to compare
    restored = ops.restore(
        Path(args.path), target=target, database_url=url, kek=_kek(), current_data_dir=current
    )
    data = {"restored_into": str(target), "header": restored.header}
    text = (
        f"restored into {target}: {ops.describe(restored.header)}\n"
        "next: put the master key in place, then run `carevault backup check` and "
        "`carevault audit verify` against it"
    )
    emit(args, data, text, default=str)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else config.data_dir() / "backups"
    found, broken = retention.list_backups(directory)
    data = {"backups": [b.as_dict() for b in found], "incomplete": [str(p) for p in broken]}
    lines = [
        f"{b.created_at}  {b.bytes:>12,}  {b.database:<10}  "
        f"master v{b.master_version}  {b.path.name}"
        for b in found
    ]
    lines += [f"NOT A WHOLE BACKUP: {p.name}" for p in broken]
    emit(args, data, "\n".join(lines) or f"no backups in {directory}", default=str)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    django_setup()
    from carevault.backup.recovery import check_all

    report = check_all()
    text = (
        f"{'every record checks out' if report.ok else 'RECORDS FAIL'}: "
        f"{report.values - report.failed_values}/{report.values} sealed values decrypt, "
        f"{report.signed - report.failed_signatures}/{report.signed} signed records verify, "
        f"{report.signing_keys - report.failed_signing_keys}/{report.signing_keys} signing keys "
        "hold, "
        f"{report.files} lab files"
    )
    emit(args, report.as_dict(), text, default=str)
    return 0 if report.ok else EXIT_FAILURE


def cmd_recover(args: argparse.Namespace) -> int:
    django_setup()
    from carevault.backup.recovery import recover

    data_dir = config.data_dir()
    with ops.opened(Path(args.source), kek=_kek(), data_dir=data_dir, work_beside=data_dir) as (
        manifest,
        unpacked,
    ):
        incident, touched = recover(args.incident, manifest, unpacked, dry_run=args.dry_run)
    data = {
        "incident": incident.pk,
        "backup": manifest["backup_id"],
        "dry_run": args.dry_run,
        "records": [t.as_dict() for t in touched],
    }
    lines = [
        f"incident {incident.pk}: {len(touched)} records touched since the backup of "
        f"{manifest['created_at']}" + (" (dry run: nothing changed)" if args.dry_run else "")
    ] + [f"  {t.outcome:<14} {t.label} {t.pk} ({', '.join(t.actions)})" for t in touched]
    emit(args, data, "\n".join(lines), default=str)
    return 0 if all(t.outcome != "failed" for t in touched) else EXIT_FAILURE


def _guarded(handler: Handler) -> Handler:
    """Refusals of a backup say so, still in one line."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (BackupError, CryptoError) as exc:
            print(f"carevault: error: backup refused: {exc}", file=sys.stderr)
            return EXIT_FAILURE

    return run


def _keep(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(commands: Commands) -> None:
    """The ``backup`` command group."""
    backup = commands.add_parser("backup", help="backups: create, verify, restore, list, recover")
    actions = backup.add_subparsers(dest="backup_command", required=True, metavar="ACTION")

    def add(name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
        return add_command(actions, name, _guarded(handler), text)

    create = add("create", cmd_create, "write an encrypted, signed snapshot to PATH")
    create.add_argument("path", metavar="PATH", help="a *.cvbackup file, or a directory")
    create.add_argument("--keep", type=_keep, help="then keep only the newest N in that directory")
    verify = add("verify", cmd_verify, "check a backup's signature, decryption and digests")
    verify.add_argument("path", metavar="PATH")
    restore = add("restore", cmd_restore, "restore a backup into an empty data directory")
    restore.add_argument("path", metavar="PATH")
    restore.add_argument("--data-dir", required=True, help="the new, empty data directory")
    restore.add_argument("--database-url", help="an empty PostgreSQL database (PostgreSQL backups)")
    listing = add("list", cmd_list, "list the whole backups in a directory, newest first")
    listing.add_argument("dir", nargs="?", metavar="DIR", help="default: DATA_DIR/backups")
    add("check", cmd_check, "decrypt every record and verify every signature (after a restore)")
    recover = add(
        "recover", cmd_recover, "restore the records an incident's actor changed, from a backup"
    )
    recover.add_argument("--incident", type=int, required=True, metavar="ID")
    recover.add_argument("--from", dest="source", required=True, metavar="PATH")
    recover.add_argument("--dry-run", action="store_true", help="list the records, change nothing")
