"""``carevault keys init | status | rotate | split | recover | reencrypt | sweep``: the master
key, and the jobs that bring stored data under it (docs/operations.md)."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from typing import Any

from carevault import config
from carevault.cli._common import (
    EXIT_FAILURE,
    CommandError,
    Commands,
    add_command,
    emit,
    positive,
)
from carevault.cli._django import django_setup, require_database
from carevault.crypto import (
    CryptoError,
    FileMasterKeyProvider,
    Keyring,
    MasterKey,
    SecretBytes,
    Suite,
    recover_secret,
    split_secret,
)
from carevault.crypto.envelope import key_id_of


def _file_provider() -> FileMasterKeyProvider:
    provider = config.master_key_provider()
    if not isinstance(provider, FileMasterKeyProvider):
        raise CommandError(
            f"the master key comes from the {provider.description}, which this command cannot "
            "change; update the secret where it is kept (see docs/operations.md)"
        )
    return provider


def load_master() -> MasterKey:
    """The master key, from wherever the configuration keeps it."""
    master = config.master_key_provider().load()
    assert isinstance(master, MasterKey)
    return master


def key_stores() -> list[tuple[str, Any]]:
    """Where wrapped keys live: the directory store, and the database once it exists."""
    from carevault.crypto.keystore import DirectoryKeyStore
    from carevault.web.accounts.outbox_store import OutboxKeyStore

    stores: list[tuple[str, Any]] = [
        ("directory", config.key_store()),
        # The sealed models' keyrings and signing key (carevault.modelstore.store).
        ("models", DirectoryKeyStore(config.data_dir() / "models" / "keys")),
        # Messages of the encrypted outbox are sealed by the master key too (issue 13).
        ("outbox", OutboxKeyStore(config.data_dir() / "outbox")),
    ]
    has_database = (
        bool(os.environ.get("DATABASE_URL", "").strip())
        or (config.data_dir() / "carevault.sqlite3").exists()
    )
    if has_database:
        django_setup()
        from django.db import connection

        if "vault_patientkey" in connection.introspection.table_names():
            from carevault.web.vault.keystore import DatabaseKeyStore

            stores.append(("database", DatabaseKeyStore()))
    return stores


def cmd_keys_init(args: argparse.Namespace) -> int:
    provider = _file_provider()
    master = provider.create()
    data = {"created": str(provider.path), "master_version": master.keyring.primary.version}
    emit(args, data, f"created a new master key at {provider.path} (owner-only permissions)")
    return 0


def cmd_keys_status(args: argparse.Namespace) -> int:
    provider = config.master_key_provider()
    master = provider.load()
    assert isinstance(master, MasterKey)
    wrapped_by: Counter[int] = Counter()
    names: list[str] = []
    for _, store in key_stores():
        for name in store.names():
            names.append(name)
            wrapped_by[key_id_of(store.get(name))] += 1
    versions = [
        {**info.as_dict(), "wraps": wrapped_by.get(info.version, 0)}
        for info in master.keyring.versions()
    ]
    stale = sum(n for v, n in wrapped_by.items() if v != master.keyring.primary.version)
    from carevault import keyrotation

    pending = (
        keyrotation.pending_target(provider)
        if isinstance(provider, FileMasterKeyProvider)
        else None
    )
    data = {
        "rotation_in_progress": pending,
        "provider": provider.description,
        "master_versions": versions,
        "primary_version": master.keyring.primary.version,
        "wrapped_keyrings": len(names),
        "wrapped_under_old_versions": stale,
        "rotation_due": master.keyring.rotation_due(),
    }
    lines = [f"master key: {provider.description}"]
    for v in versions:
        lines.append(
            f"  v{v['version']:<3} {v['state']:<13} {v['suite']}  created {v['created_at'] or '-'}"
            f"  wraps {v['wraps']} key(s)"
        )
    lines.append(f"wrapped keys: {len(names)} ({stale} still under an older master version)")
    if pending is not None:
        lines.append(
            f"rotation to v{pending} was interrupted: run `carevault keys rotate` to finish it"
        )
    emit(args, data, "\n".join(lines))
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from carevault import keyrotation

    provider = _file_provider()
    stores = key_stores()
    done = keyrotation.rotate(provider, stores)
    report, new_version = done.report, done.master_version
    if any(label == "database" for label, _ in stores):
        from carevault.web.audit.log import Outcome, record

        record(
            "keys.master_rotate",
            outcome=Outcome.OK if report.complete else Outcome.FAILED,
            details={
                "master_version": new_version,
                "resumed": done.resumed,
                "rewrapped": len(report.rewrapped),
                "failed": len(report.failed) + len(report.changed_meanwhile),
            },
        )
    data = {
        "master_version": new_version,
        "resumed": done.resumed,
        "rewrapped": len(report.rewrapped),
        "already_current": len(report.already_current),
        "failed": report.failed,
        "changed_meanwhile": report.changed_meanwhile,
        "complete": report.complete,
    }
    verb = "finished the interrupted rotation to" if done.resumed else "master key rotated to"
    text = (
        f"{verb} v{new_version}; rewrapped {len(report.rewrapped)} key(s), "
        f"{len(report.already_current)} already current. Running app servers pick up the new "
        "version by themselves. Shares made by `keys split` before this rotation "
        "recover the old master only: split again and replace them"
    )
    if not report.complete:
        text += (
            f"; {len(report.failed)} failed, {len(report.changed_meanwhile)} changed meanwhile: "
            f"run `carevault keys rotate` again to finish v{new_version}"
        )
    emit(args, data, text)
    return 0 if report.complete else EXIT_FAILURE


def cmd_keys_split(args: argparse.Namespace) -> int:
    master = load_master()
    shares = split_secret(SecretBytes(master.keyring.to_json()), args.threshold, args.shares)
    texts = [s.to_text() for s in shares]
    data = {"threshold": args.threshold, "shares": texts}
    lines = [
        f"master key split {args.threshold}-of-{args.shares}. Give each share to a different "
        "custodian; any "
        f"{args.threshold} recover the key with `carevault keys recover`, fewer reveal nothing."
    ]
    lines += [f"share {s.index}: {t}" for s, t in zip(shares, texts, strict=True)]
    emit(args, data, "\n".join(lines))
    return 0


def cmd_keys_recover(args: argparse.Namespace) -> int:
    provider = _file_provider()
    if provider.exists():
        raise CommandError(
            f"a master key already exists at {provider.path}; move it away before recovering"
        )
    # Shares come on standard input, one per line: never as arguments, which shells and `ps`
    # would keep.
    lines = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if not lines:
        raise CommandError("no shares given: paste them on standard input, one per line")
    shares = [
        line.split(":", 1)[1].strip() if line.startswith("share ") else line for line in lines
    ]
    secret = recover_secret(shares)
    master = MasterKey(Keyring.from_json(secret.expose()))
    provider.save(master)
    data = {"recovered": str(provider.path), "master_version": master.keyring.primary.version}
    emit(args, data, f"master key recovered from {len(shares)} share(s) into {provider.path}")
    return 0


def _job_facts(job: Any) -> dict[str, Any]:
    return {
        "job": job.pk,
        "target_suite": job.target_suite,
        "status": job.status,
        "percent": job.percent,
        "total": job.total,
        "scanned": job.scanned,
        "reencrypted": job.reencrypted,
        "conflicts": job.conflicts,
        "failures": job.failures,
        "reason": job.reason,
    }


def _job_line(job: Any) -> str:
    return (
        f"job {job.pk} -> {job.target_suite}: {job.status}, {job.percent}% "
        f"({job.scanned}/{job.total} records, {job.reencrypted} re-encrypted, "
        f"{job.conflicts} changed meanwhile, {job.failures} failed)"
    )


def cmd_keys_reencrypt(args: argparse.Namespace) -> int:
    """Run (or resume) the re-encryption job that brings stored data up to the floor."""
    django_setup()
    require_database()
    from carevault.web.vault import reencrypt

    if args.status:
        job = reencrypt.open_job()
        if job is None:
            emit(args, {"job": None}, "no re-encryption job is open")
            return 0
        emit(args, _job_facts(job), _job_line(job))
        return 0
    if args.to:
        try:
            target = Suite.parse(args.to)
        except CryptoError as exc:
            raise CommandError(str(exc)) from None
        job = reencrypt.request_job(target, f"requested on the command line: {target.label}")
    else:
        job = reencrypt.open_job()
        if job is None:
            from carevault.web.securitycore import state

            floor = state.current_floor()
            if floor is None:
                emit(
                    args,
                    {"job": None},
                    "nothing to do: no job is open and no floor is raised "
                    "(use --to SUITE to re-encrypt up to a suite of your choice)",
                )
                return 0
            job = reencrypt.request_job(Suite.parse(floor.suite), f"floor {floor.suite}")

    def progress(current: Any) -> None:
        if not args.json:
            print(_job_line(current), file=sys.stderr, flush=True)

    try:
        done = reencrypt.run(job.pk, batch=args.batch, on_batch=progress)
    except reencrypt.JobBusy as exc:
        raise CommandError(f"{exc}; try again once its lease runs out") from None
    facts, line = _job_facts(done), _job_line(done)
    if done.status == "done":
        # What an interrupted run may have left (unreferenced files), past the grace period.
        from carevault.web.vault import sweep

        swept = sweep.sweep()
        facts["swept"] = swept.removed
        line += f"; swept {swept.removed} leftover file(s)" if swept.removed else ""
    emit(args, facts, line)
    return 0 if done.failures == 0 else EXIT_FAILURE


def cmd_keys_sweep(args: argparse.Namespace) -> int:
    """Remove what an interrupted key job left behind (issue 13)."""
    django_setup()
    require_database()
    from carevault.web.vault import sweep

    grace = sweep.DEFAULT_GRACE_SECONDS if args.older_than is None else args.older_than
    report = sweep.sweep(older_than=grace, dry_run=args.dry_run)
    data = {
        "orphan_files": report.orphan_files,
        "partial_writes": report.partial_writes,
        "referenced_files": report.referenced,
        "removed": 0 if args.dry_run else report.removed,
        "dry_run": args.dry_run,
    }
    verb = "would remove" if args.dry_run else "removed"
    text = (
        f"{verb} {len(report.orphan_files)} unreferenced stored file(s) and "
        f"{len(report.partial_writes)} interrupted write(s); "
        f"{report.referenced} stored file(s) are referenced and kept"
    )
    emit(args, data, text)
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def register(commands: Commands) -> None:
    """The ``keys`` command group."""
    keys = commands.add_parser(
        "keys", help="master key: init, status, rotate, split, recover; data: reencrypt"
    )
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    add_command(actions, "init", cmd_keys_init, "create the master key file (dev/demo mode)")
    add_command(actions, "status", cmd_keys_status, "show master key versions and what they wrap")
    add_command(
        actions, "rotate", cmd_keys_rotate, "rotate the master key and rewrap all data keys"
    )
    split = add_command(actions, "split", cmd_keys_split, "split the master key into k-of-n shares")
    split.add_argument("--threshold", "-k", type=positive, required=True, help="shares needed")
    split.add_argument("--shares", "-n", type=positive, required=True, help="shares made")
    add_command(actions, "recover", cmd_keys_recover, "rebuild the master key from shares on stdin")
    reenc = add_command(
        actions,
        "reencrypt",
        cmd_keys_reencrypt,
        "re-encrypt stored data below the raised floor (resumes an interrupted job)",
    )
    reenc.add_argument("--to", metavar="SUITE", help="raise everything to this suite instead")
    reenc.add_argument("--status", action="store_true", help="show the open job and exit")
    reenc.add_argument("--batch", type=positive, default=100, help="records per batch")
    sweep = add_command(
        actions,
        "sweep",
        cmd_keys_sweep,
        "remove files no committed record names (left by an interrupted key job)",
    )
    sweep.add_argument(
        "--older-than",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="only files at least this old (default 900: younger ones may be uploads whose "
        "transaction has not committed yet)",
    )
    sweep.add_argument("--dry-run", action="store_true", help="list, remove nothing")
