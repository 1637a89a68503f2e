"""The ``carevault`` command. Every subcommand has ``--help``; failures print one line to stderr
and exit non-zero; ``--json`` gives machine-readable output where a machine would read it."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from carevault import config
from carevault.crypto import (
    CryptoError,
    FileMasterKeyProvider,
    Keyring,
    MasterKey,
    SecretBytes,
    recover_secret,
    split_secret,
)
from carevault.crypto.envelope import key_id_of

EXIT_FAILURE = 1


class CommandError(Exception):
    """A failure to report to the user in one line."""


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


# -- selfcheck -----------------------------------------------------------------------------------


def cmd_selfcheck(args: argparse.Namespace) -> int:
    from carevault import selfcheck

    results = selfcheck.run()
    ok = all(r.ok for r in results)
    lines = [f"{'ok  ' if r.ok else 'FAIL'}  {r.name}: {r.detail}" for r in results]
    lines.append("crypto self-check passed" if ok else "crypto self-check FAILED")
    data = {"ok": ok, "checks": [r.__dict__ for r in results]}
    _emit(args, data, "\n".join(lines))
    return 0 if ok else EXIT_FAILURE


# -- keys ----------------------------------------------------------------------------------------


def _file_provider() -> FileMasterKeyProvider:
    provider = config.master_key_provider()
    if not isinstance(provider, FileMasterKeyProvider):
        raise CommandError(
            f"the master key comes from the {provider.description}, which this command cannot "
            "change; update the secret where it is kept (see docs/operations.md)"
        )
    return provider


def _load_master() -> MasterKey:
    master = config.master_key_provider().load()
    assert isinstance(master, MasterKey)
    return master


def _key_stores() -> list[tuple[str, Any]]:
    """Where wrapped keys live: the directory store, and the database once it exists."""
    import os

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
        _django()
        from django.db import connection

        if "vault_patientkey" in connection.introspection.table_names():
            from carevault.web.vault.keystore import DatabaseKeyStore

            stores.append(("database", DatabaseKeyStore()))
    return stores


def cmd_keys_init(args: argparse.Namespace) -> int:
    provider = _file_provider()
    master = provider.create()
    data = {"created": str(provider.path), "master_version": master.keyring.primary.version}
    _emit(args, data, f"created a new master key at {provider.path} (owner-only permissions)")
    return 0


def cmd_keys_status(args: argparse.Namespace) -> int:
    provider = config.master_key_provider()
    master = provider.load()
    assert isinstance(master, MasterKey)
    wrapped_by: Counter[int] = Counter()
    names: list[str] = []
    for _, store in _key_stores():
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
    _emit(args, data, "\n".join(lines))
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from carevault import keyrotation

    provider = _file_provider()
    stores = _key_stores()
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
    _emit(args, data, text)
    return 0 if report.complete else EXIT_FAILURE


def cmd_keys_split(args: argparse.Namespace) -> int:
    master = _load_master()
    shares = split_secret(SecretBytes(master.keyring.to_json()), args.threshold, args.shares)
    texts = [s.to_text() for s in shares]
    data = {"threshold": args.threshold, "shares": texts}
    lines = [
        f"master key split {args.threshold}-of-{args.shares}. Give each share to a different "
        "custodian; any "
        f"{args.threshold} recover the key with `carevault keys recover`, fewer reveal nothing."
    ]
    lines += [f"share {s.index}: {t}" for s, t in zip(shares, texts, strict=True)]
    _emit(args, data, "\n".join(lines))
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
    _emit(args, data, f"master key recovered from {len(shares)} share(s) into {provider.path}")
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
    _django()
    _require_database()
    import sys

    from carevault.crypto import CryptoError, Suite
    from carevault.web.vault import reencrypt

    if args.status:
        job = reencrypt.open_job()
        if job is None:
            _emit(args, {"job": None}, "no re-encryption job is open")
            return 0
        _emit(args, _job_facts(job), _job_line(job))
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
                _emit(
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
    _emit(args, facts, line)
    return 0 if done.failures == 0 else EXIT_FAILURE


# -- web: demo, serve, audit, manage --------------------------------------------------------------


def _django() -> None:
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "carevault.web.settings")
    django.setup()


def _require_database() -> None:
    from django.db import connection

    if "audit_auditentry" not in connection.introspection.table_names():
        raise CommandError(
            "the database has no CareVault tables yet: run `carevault demo --seed-only` or "
            "`carevault manage migrate` first"
        )


def _migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    # An install made before the data directory was owner-only: tighten what it holds.
    config.tighten_tree(config.secure_data_dir())


def _demo_password(given: str | None) -> str:
    """The demo password: given, or created once per data directory (never in the repo)."""
    import secrets

    from carevault.platform.files import atomic_write_bytes

    if given:
        return given
    path = config.data_dir() / "demo-password"
    if not path.exists():
        atomic_write_bytes(path, f"demo-{secrets.token_urlsafe(9)}".encode())
    return path.read_text().strip()


def cmd_demo(args: argparse.Namespace) -> int:
    _django()
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    from carevault.web import demo

    password = _demo_password(args.password)
    try:
        validate_password(password)
    except ValidationError as exc:
        raise CommandError("the demo password is too weak: " + " ".join(exc.messages)) from None
    _migrate()
    if args.seed_only and args.prepare:
        raise CommandError("--seed-only and --prepare exclude each other")
    if not args.seed_only:
        # Before seeding, so the demo's records are already encrypted the way the policy picks.
        _ensure_policy()
    seeded = not demo.is_seeded()
    if seeded:
        from carevault.web.audit import anchor

        demo.seed(password)
        anchor.write_checkpoint()  # the seeded chain is anchored outside the database at once
    users = [u for u, *_ in demo.STAFF] + [p.username for p in demo.PATIENTS]
    data = {"seeded": seeded, "users": users, "password": None if args.password else password}
    lines = [
        ("created the demo data" if seeded else "demo data already present; left as it is"),
        f"demo logins: {', '.join(users)}",
        "password: " + ("the one you gave" if args.password else password),
    ]
    _emit(args, data, "\n".join(lines))
    if args.seed_only:
        return 0
    _ensure_diagnosis_models()
    _ensure_risk_model()
    if args.prepare:
        return 0
    return _serve(args.host, args.port, workers=1)


def _ensure_policy() -> None:
    """The demo's adaptive encryption policy (about 5 s), trained once, on the first start.
    Without it every write gets the strongest suite: safe, but the demo would show no choice."""
    from carevault.security.policy import MODEL_NAME, train_policy

    if (config.data_dir() / "models" / MODEL_NAME).is_dir():
        return
    print("training the encryption policy (first start only)...", flush=True)
    report = train_policy(_model_store(), seed=0)
    print(
        f"sealed {MODEL_NAME} v{report.get('version', '?')} "
        "(retrain: carevault security train-policy; compare: carevault bench policy)",
        flush=True,
    )


def _ensure_diagnosis_models() -> None:
    """The diagnosis models the doctors' assistant serves (a few seconds), trained and sealed
    once, on the demo's first start."""
    from carevault.modelguard import diagnosis_training

    if (config.data_dir() / "models" / "diagnosis-logistic").is_dir():
        return
    print("training the diagnosis models (first start only)...", flush=True)
    reports = diagnosis_training.train(_model_store())
    print(
        "; ".join(f"{r.name} v{r.version}: accuracy {r.metrics['accuracy']:.3f}" for r in reports)
        + " (retrain: carevault model train; check: carevault model verify)",
        flush=True,
    )


def _ensure_risk_model() -> None:
    """The demo's threat-detection model: smaller than `carevault security train`'s default
    (about 20 s on two cores instead of a minute), trained once, on the demo's first start."""
    from carevault.security.baseline import latest_model_version

    if latest_model_version(config.data_dir()):
        return
    from carevault.security import training

    print("training the threat-detection ensemble (first start only)...", flush=True)
    demo_config = training.TrainConfig(seed=1, days=3.0, users=60)
    report = training.train(demo_config, _model_store())
    seconds = sum(report["seconds"].values())
    print(
        f"sealed {report['model']} v{report['version']} in {seconds:.0f} s "
        "(retrain: carevault security train; check: carevault security evaluate)",
        flush=True,
    )


def _serve(host: str, port: int, *, workers: int, tls: bool = False) -> int:
    import os

    tls_args: list[str] = []
    if tls:
        from carevault.crypto.tls import ensure_certificate

        cert, key = ensure_certificate(config.data_dir() / "tls")
        tls_args = ["--certfile", str(cert), "--keyfile", str(key)]
        # Served over HTTPS: secure cookies and HSTS (settings read this at start-up).
        os.environ["CAREVAULT_HTTPS"] = "true"
        print(f"TLS certificate: {cert} (self-signed; trust it or replace it)", flush=True)
    scheme = "https" if tls else "http"
    print(f"CareVault at {scheme}://{host}:{port}/ (Ctrl+C stops it)", flush=True)
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "carevault.web.wsgi:application",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--access-logfile",
        "-",
        *tls_args,
    ]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "carevault.web.settings")
    os.execv(sys.executable, argv)  # noqa: S606 - fixed program, arguments built above


def cmd_serve(args: argparse.Namespace) -> int:
    _django()
    _migrate()
    return _serve(args.host, args.port, workers=args.workers, tls=args.tls)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    _django()
    _require_database()
    from carevault.web.audit import anchor
    from carevault.web.audit.log import verify_chain

    report = verify_chain()
    text = (
        f"audit chain intact: {report.entries} entries"
        if report.ok
        else "audit chain BROKEN:\n" + "\n".join(f"  {p}" for p in report.problems)
    )
    if report.ok:
        # Only a verified chain is anchored: a checkpoint over a broken one would launder it.
        anchor.write_checkpoint()
    _emit(args, report.as_dict(), text)
    return 0 if report.ok else EXIT_FAILURE


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    _django()
    _require_database()
    from carevault.web.audit import anchor

    written = anchor.write_checkpoint()
    text = f"audit checkpoint: entry {written['seq']} anchored in {anchor.checkpoint_file()}"
    _emit(args, written, text)
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    """The e-mails a development server 'sent' (kept encrypted in the data directory)."""
    if config.is_production():
        raise CommandError("production mode sends e-mail through SMTP; there is no outbox")
    _django()
    from carevault.web.accounts.outbox import read_outbox

    messages = read_outbox()
    data = {"messages": [m.__dict__ for m in messages]}
    text = "\n\n".join(f"To: {', '.join(m.to)}\nSubject: {m.subject}\n\n{m.body}" for m in messages)
    _emit(args, data, text or "the outbox is empty")
    return 0


def cmd_manage(args: argparse.Namespace) -> int:
    _django()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["carevault manage", *args.rest])
    return 0


# -- security: the officer's way back in (web/securitycore/operator.py) ---------------------------


def _operator() -> Any:
    _django()
    _require_database()
    from carevault.web.securitycore import operator

    return operator


def _operator_done(args: argparse.Namespace, run: Callable[[], Any]) -> int:
    operator = _operator()
    try:
        done = run()
    except operator.OperatorError as exc:
        raise CommandError(str(exc)) from None
    _emit(args, done.facts, done.message)
    return 0


def cmd_security_status(args: argparse.Namespace) -> int:
    operator = _operator()
    facts = operator.status()
    _emit(args, facts, operator.render_status(facts))
    return 0


def cmd_security_incidents(args: argparse.Namespace) -> int:
    operator = _operator()
    listed = operator.incidents(limit=args.limit)
    _emit(args, {"incidents": listed}, operator.render_incidents(listed))
    return 0


def cmd_security_activity(args: argparse.Namespace) -> int:
    import datetime as dt

    try:
        since = dt.datetime.fromisoformat(args.since)
    except ValueError:
        raise CommandError(f"--since: not an ISO 8601 time: {args.since!r}") from None
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    operator = _operator()
    facts = operator.activity(since)
    text = (
        f"{len(facts['events'])} events and {len(facts['incidents'])} incidents since "
        f"{facts['since']}"
    )
    _emit(args, facts, text)
    return 0


def cmd_security_unblock(args: argparse.Namespace) -> int:
    return _operator_done(args, lambda: _operator().unblock(args.address))


def cmd_security_lift(args: argparse.Namespace) -> int:
    return _operator_done(args, lambda: _operator().lift(args.username))


def cmd_security_lift_floor(args: argparse.Namespace) -> int:
    return _operator_done(args, lambda: _operator().lift_floor())


# -- security: train and evaluate the risk ensemble ------------------------------------------------


def _model_store() -> Any:
    from carevault.modelstore.datadir import model_store

    return model_store(config.data_dir())


def cmd_security_train(args: argparse.Namespace) -> int:
    from carevault.modelstore.store import SealedModelError
    from carevault.security import training

    train_config = training.TrainConfig(
        seed=args.seed, days=args.days, users=args.users, fusion=args.fusion
    )
    try:
        report = training.train(train_config, _model_store())
    except SealedModelError as exc:
        raise CommandError(str(exc)) from None
    _emit(args, report, training.render_train(report))
    return 0


def cmd_security_evaluate(args: argparse.Namespace) -> int:
    from carevault.modelstore.store import SealedModelError
    from carevault.security import training

    try:
        result = training.evaluate(
            _model_store(),
            seed=args.seed,
            days=args.days,
            users=args.users,
            version=args.version,
            day=args.day,
        )
    except SealedModelError as exc:
        raise CommandError(str(exc)) from None
    _emit(args, result, training.render_evaluation(result))
    return 0


def cmd_security_record_day(args: argparse.Namespace) -> int:
    """Play a clinic day in Chromium against a real server and write its events (JSONL)."""
    from carevault.web.securitycore import clinic_day_recorder

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = clinic_day_recorder.record(out, short=args.short, keep=args.keep)
    text = (
        f"recorded {summary['events']} events of {summary['accounts']} accounts "
        f"({summary['unknown_names']} names that are no account) from "
        f"{summary['addresses']} addresses over {summary['hours']:.1f} hours of the day in "
        f"{summary['seconds']:.0f} s: {out}"
    )
    _emit(args, summary, text)
    return 0


def cmd_security_train_policy(args: argparse.Namespace) -> int:
    from carevault.modelstore.store import SealedModelError
    from carevault.security import policy_training
    from carevault.security.policy import train_policy

    try:
        report = train_policy(_model_store(), seed=args.seed)
    except SealedModelError as exc:
        raise CommandError(str(exc)) from None
    _emit(args, report, policy_training.render_train(report))
    return 0


# -- model: the diagnosis models ------------------------------------------------------------------


def cmd_model_train(args: argparse.Namespace) -> int:
    from carevault.modelguard import diagnosis_training, extra_data, privacy
    from carevault.modelstore.store import SealedModelError

    if args.delta is not None and args.private is None:
        raise CommandError("--delta needs --private EPSILON")
    if args.no_screen and args.extra_data is None:
        raise CommandError("--no-screen needs --extra-data FILE")
    private = None
    if args.private is not None:
        delta = privacy.DEFAULT_DELTA if args.delta is None else args.delta
        if not 0.0 < delta < 1.0:
            raise CommandError(f"--delta must be between 0 and 1, got {delta:g}")
        private = diagnosis_training.Privacy(args.private, delta)
    extra = None
    if args.extra_data is not None:
        # Read and screened before anything is trained: a bad file seals nothing.
        rows = extra_data.read_csv(args.extra_data)
        extra = diagnosis_training.screen_extra(rows, seed=args.seed, enabled=not args.no_screen)
    try:
        reports = diagnosis_training.train(
            _model_store(), seed=args.seed, private=private, extra=extra
        )
    except SealedModelError as exc:
        raise CommandError(str(exc)) from None
    data = {
        "seed": args.seed,
        "quality_bar": diagnosis_training.DEFAULT_BAR.as_dict(),
        "models": [r.as_dict() for r in reports],
        "private": None if private is None else {"epsilon": private.epsilon, "delta": delta},
        "extra_data": None if extra is None else extra.as_dict(),
    }
    _emit(args, data, diagnosis_training.render(reports))
    refused = [r for r in reports if not r.sealed]
    if refused:
        raise CommandError(
            "; ".join(
                f"{r.name} not sealed: {', '.join(r.failures)}"
                + (
                    f" (differentially private at epsilon {private.epsilon:g}: a larger "
                    "epsilon adds less noise)"
                    if private is not None and r.extra.get("privacy")
                    else ""
                )
                for r in refused
            )
        )
    return 0


def cmd_model_seal(args: argparse.Namespace) -> int:
    from carevault.modelguard import diagnosis_training
    from carevault.modelstore.store import SealedModelError

    try:
        report = diagnosis_training.import_file(_model_store(), args.path, seed=args.seed)
    except SealedModelError as exc:
        raise CommandError(str(exc)) from None
    _emit(args, report.as_dict(), diagnosis_training.render([report]))
    if not report.sealed:
        raise CommandError(f"{report.name} not sealed: {', '.join(report.failures)}")
    return 0


def cmd_model_multiparty(args: argparse.Namespace) -> int:
    """Score held-out cases with the sealed logistic model among three local MPyC parties, beside
    the plaintext model: the multi-party demo (docs/models-multiparty.md)."""
    import time

    from carevault.modelguard import dataset, multiparty, sealed
    from carevault.modelguard.models import LOGISTIC, linear_form
    from carevault.modelguard.multiparty_launcher import LocalParties
    from carevault.modelstore.store import SealedModelError

    split = dataset.load_split()
    if not 1 <= args.cases <= len(split.X_test):
        raise CommandError(f"--cases must be between 1 and {len(split.X_test)}")
    try:
        served = sealed.load(_model_store(), LOGISTIC)
    except SealedModelError as exc:
        raise CommandError(str(exc)) from None
    form = linear_form(served.pipeline)
    cases = split.X_test[: args.cases]
    plain = served.pipeline.predict(cases) if args.reveal == "label" else form.decision(cases)
    timings: list[float] = []
    values: list[float] = []
    try:
        with LocalParties(multiparty.deal_model(form)) as parties:
            started = parties.start_seconds
            for x in cases:
                begin = time.perf_counter()
                values.append(float(parties.predict(x, args.reveal)[0]))
                timings.append((time.perf_counter() - begin) * 1e3)
    except multiparty.MultipartyError as exc:
        raise CommandError(f"multi-party scoring failed: {exc}") from None
    if args.reveal == "label":
        agree = sum(int(v == p) for v, p in zip(values, plain, strict=True))
    else:
        agree = sum(int(abs(v - p) < 1e-4) for v, p in zip(values, plain, strict=True))
    timings.sort()
    data = {
        "model": served.name,
        "version": served.version,
        "reveal": args.reveal,
        "cases": args.cases,
        "agree": agree,
        "start_seconds": round(started, 3),
        "p50_ms": round(timings[len(timings) // 2], 2),
        "max_ms": round(timings[-1], 2),
    }
    text = (
        f"{served.name} v{served.version} among 3 local parties (started in {started:.2f} s): "
        f"{agree}/{args.cases} {args.reveal}s agree with the plaintext model; "
        f"p50 {data['p50_ms']} ms, max {data['max_ms']} ms per prediction"
    )
    _emit(args, data, text)
    return 0 if agree == args.cases else EXIT_FAILURE


def cmd_model_verify(args: argparse.Namespace) -> int:
    from carevault.modelguard import sealed

    root = config.data_dir() / "models"
    if not any((root / name).is_dir() for name in sealed.MODEL_NAMES.values()):
        # Said before opening the store, which would create a dev master key as a side effect.
        raise CommandError(f"no sealed diagnosis model in {root}: run `carevault model train`")
    store = _model_store()
    report = sealed.verify_all(store)
    lines = []
    for entry in report["models"]:
        versions = ", ".join(
            f"v{v['version']} {'ok' if v['ok'] else 'REFUSED'}" for v in entry["versions"]
        )
        state = f"serving v{entry['current_version']}" if entry["ok"] else "FAILED"
        lines.append(f"{entry['model']}: {state} ({versions or 'no versions'})")
        lines += [f"  {error}" for error in entry["errors"]]
        if entry["ok"] and entry["current_version"] is not None:
            lines += _training_notes(entry, store)
    _emit(args, report, "\n".join(lines))
    if not report["ok"]:
        first = next(e["errors"][0] for e in report["models"] if e["errors"])
        raise CommandError(first)
    return 0


def _training_notes(entry: dict[str, Any], store: Any) -> list[str]:
    """The served version's privacy and extra-data facts from its signed manifest (added to
    ``entry`` for --json). Floats come back as the manifest's short decimal text."""
    metadata = store.inspect(entry["model"], entry["current_version"]).manifest["metadata"]
    lines = []
    entry["privacy"] = metadata.get("privacy")
    if entry["privacy"]:
        p = entry["privacy"]
        lines += [
            f"  differentially private: epsilon {p['epsilon']}, delta {p['delta']}, C {p['C']}, "
            f"radius {p['radius']}, noise sd {p['noise_scale']}",
            f"  covers: {p['covers']}",
            f"  does not cover: {p['does_not_cover']}",
        ]
    elif "privacy" in metadata:
        lines.append("  not differentially private (trained in a --private run)")
    extra = metadata.get("training_data", {}).get("extra_data")
    entry["extra_data"] = extra
    if extra:
        screened = "screened" if extra["screened"] else "NOT screened: --no-screen"
        lines.append(
            f"  trained with {extra['kept']} of {extra['rows']} extra rows from "
            f"{extra['file']} ({screened})"
        )
    return lines


# -- bench ---------------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    if args.target == "crypto":
        from carevault.bench import crypto as bench_crypto

        result = bench_crypto.run(quick=args.quick)
        _emit(args, result, bench_crypto.render(result))
        return 0
    if args.target == "web":
        import os
        import tempfile

        # Its own data directory and database: a benchmark never writes into the user's.
        with tempfile.TemporaryDirectory(prefix="carevault-bench-") as scratch:
            os.environ["CAREVAULT_DATA_DIR"] = scratch
            os.environ.pop("DATABASE_URL", None)
            _django()
            from carevault.bench import web as bench_web

            result = bench_web.run(quick=args.quick)
        _emit(args, result, bench_web.render(result))
        return 0
    if args.target == "security":
        from carevault.bench import security as bench_security

        result = bench_security.run(quick=args.quick)
        _emit(args, result, bench_security.render(result))
        return 0
    if args.target == "policy":
        from carevault.bench import policy as bench_policy

        result = bench_policy.run(quick=args.quick)
        _emit(args, result, bench_policy.render(result))
        return 0
    if args.target == "models":
        from carevault.bench import models as bench_models

        try:
            result = bench_models.run(quick=args.quick, parts=args.part or None)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        _emit(args, result, bench_models.render(result))
        return 0
    if args.target == "killsafety":
        from carevault.bench import killsafety

        # Its own scratch data directory (forked jobs, SIGKILLed on purpose): never the user's.
        result = killsafety.run(points=args.points, seed=args.seed, quick=args.quick)
        _emit(args, result, killsafety.render(result))
        return 0 if result["lost"] == result["tampered"] == result["resume_failures"] == 0 else 1
    raise CommandError(f"unknown benchmark {args.target!r}")


# -- parser --------------------------------------------------------------------------------------


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carevault", description="CareVault: secure clinical records."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        subparsers: Any, name: str, handler: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = subparsers.add_parser(name, help=help, description=help)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(handler=handler)
        return p

    add(sub, "selfcheck", cmd_selfcheck, "run the crypto self-check")

    keys = sub.add_parser(
        "keys", help="master key: init, status, rotate, split, recover; data: reencrypt"
    )
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    add(keys_sub, "init", cmd_keys_init, "create the master key file (dev/demo mode)")
    add(keys_sub, "status", cmd_keys_status, "show master key versions and what they wrap")
    add(keys_sub, "rotate", cmd_keys_rotate, "rotate the master key and rewrap all data keys")
    split = add(keys_sub, "split", cmd_keys_split, "split the master key into k-of-n shares")
    split.add_argument("--threshold", "-k", type=_positive, required=True, help="shares needed")
    split.add_argument("--shares", "-n", type=_positive, required=True, help="shares made")
    add(keys_sub, "recover", cmd_keys_recover, "rebuild the master key from shares on stdin")
    reenc = add(
        keys_sub,
        "reencrypt",
        cmd_keys_reencrypt,
        "re-encrypt stored data below the raised floor (resumes an interrupted job)",
    )
    reenc.add_argument("--to", metavar="SUITE", help="raise everything to this suite instead")
    reenc.add_argument("--status", action="store_true", help="show the open job and exit")
    reenc.add_argument("--batch", type=_positive, default=100, help="records per batch")
    from carevault import cli_keys

    cli_keys.add_sweep(keys_sub, add)

    demo = add(sub, "demo", cmd_demo, "create the demo data and serve it (make run)")
    demo.add_argument("--seed-only", action="store_true", help="create the data, do not serve")
    demo.add_argument(
        "--prepare",
        action="store_true",
        help="create the data and train the demo's models, do not serve (then: carevault serve)",
    )
    demo.add_argument("--password", help="password of every demo user (default: generated)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=_positive, default=8000)

    serve = add(sub, "serve", cmd_serve, "serve CareVault with gunicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_positive, default=8000)
    serve.add_argument("--workers", type=_positive, default=2)
    serve.add_argument("--tls", action="store_true", help="HTTPS with a local certificate")

    audit = sub.add_parser("audit", help="the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    add(audit_sub, "verify", cmd_audit_verify, "check the audit chain for edits and deletions")
    add(audit_sub, "checkpoint", cmd_audit_checkpoint, "anchor the audit head in a signed file")

    add(sub, "outbox", cmd_outbox, "show the e-mails a development server sent")

    from carevault import cli_backup

    cli_backup.add_parser(sub)
    from carevault import cli_attack

    cli_attack.add_parser(sub, _positive)

    manage = sub.add_parser("manage", help="Django management commands (migrate, shell, ...)")
    manage.add_argument("rest", nargs=argparse.REMAINDER)
    manage.set_defaults(handler=cmd_manage)

    security = sub.add_parser(
        "security",
        help="the AI threat detection: train, evaluate; the encryption policy; the officer's "
        "way back in (status, incidents, unblock, lift, lift-floor)",
    )
    security_sub = security.add_subparsers(dest="security_command", required=True, metavar="ACTION")
    train = add(
        security_sub,
        "train",
        cmd_security_train,
        "train the risk ensemble on generated traffic and seal it into the data directory",
    )
    train.add_argument("--seed", type=int, default=1, help="traffic generator seed (default 1)")
    train.add_argument("--days", type=_positive_number, default=14.0, help="days of traffic")
    train.add_argument("--users", type=_positive, default=120, help="simulated accounts")
    train.add_argument(
        "--fusion", choices=["stacking", "max", "fisher"], default="stacking", help="how to fuse"
    )
    evaluate = add(
        security_sub,
        "evaluate",
        cmd_security_evaluate,
        "score held-out generated traffic with the sealed ensemble: ROC-AUC, precision/recall, "
        "false positives and time-to-detect per attack class and detector",
    )
    evaluate.add_argument(
        "--seed", type=int, default=2, help="generator seed, not the training one (default 2)"
    )
    evaluate.add_argument(
        "--days", type=_positive_number, default=None, help="days (default: as trained)"
    )
    evaluate.add_argument("--users", type=_positive, default=None, help="default: as trained")
    evaluate.add_argument("--version", type=_positive, default=None, help="model version")
    evaluate.add_argument(
        "--day",
        default=None,
        help="a recorded clinic day (JSONL) to replay; default: the one shipped with CareVault",
    )
    record_day = add(
        security_sub,
        "record-day",
        cmd_security_record_day,
        "play a clinic day in Chromium against a fresh server and record its security events",
    )
    record_day.add_argument("--out", required=True, help="the JSONL event log to write")
    record_day.add_argument(
        "--short", action="store_true", help="a short day (a smoke test, under a minute)"
    )
    record_day.add_argument(
        "--keep", type=Path, default=None, help="the data directory to build the clinic in"
    )
    train_policy = add(
        security_sub,
        "train-policy",
        cmd_security_train_policy,
        "measure the suites' costs on this machine, label, fit the adaptive encryption policy "
        "and seal it into the data directory",
    )
    train_policy.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    add(
        security_sub,
        "status",
        cmd_security_status,
        "blocked addresses, suspended accounts, the encryption floor, active incidents, limits",
    )
    incidents = add(
        security_sub,
        "incidents",
        cmd_security_incidents,
        "active incidents with the responses in force and who may lift them",
    )
    incidents.add_argument("--limit", type=_positive, default=20, help="at most (default 20)")
    activity = add(
        security_sub,
        "activity",
        cmd_security_activity,
        "every scored event and every incident (any status) with its responses since a time",
    )
    activity.add_argument(
        "--since", required=True, help="ISO 8601 time (UTC if no offset is given)"
    )
    unblock = add(
        security_sub,
        "unblock",
        cmd_security_unblock,
        "end an address block now; its evidence is marked handled so it does not fire again",
    )
    unblock.add_argument("address", help="the blocked IP address")
    lift = add(
        security_sub,
        "lift",
        cmd_security_lift,
        "lift an account's suspension and back-off now; its evidence is marked handled",
    )
    lift.add_argument("username", help="the account's username")
    add(
        security_sub,
        "lift-floor",
        cmd_security_lift_floor,
        "lower a raised encryption floor now; its evidence is marked handled",
    )

    model = sub.add_parser("model", help="the diagnosis models: train, seal, verify, multiparty")
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    model_train = add(
        model_sub,
        "train",
        cmd_model_train,
        "train the logistic and forest diagnosis models, print their held-out accuracy, "
        "ROC-AUC, Brier score and calibration error, and seal those that clear the quality bar "
        "into the data directory (exit 1 if one does not)",
    )
    model_train.add_argument(
        "--seed", type=int, default=0, help="train/test split and model seed (default 0)"
    )
    model_train.add_argument(
        "--private",
        type=_positive_number,
        metavar="EPSILON",
        help="train the logistic model with (EPSILON, delta)-differential privacy (OpenDP "
        "output perturbation); refused like any model if it misses the quality bar",
    )
    model_train.add_argument(
        "--delta",
        type=float,
        metavar="D",
        help="delta of --private (default 1e-05)",
    )
    model_train.add_argument(
        "--extra-data",
        metavar="FILE.csv",
        help="add labelled rows (header: the 30 feature names and 'label', 1 = malignant) to "
        "training, after the poison screen drops suspicious ones",
    )
    model_train.add_argument(
        "--no-screen",
        action="store_true",
        help="add every --extra-data row without screening it for poison (warned in the report)",
    )
    model_seal = add(
        model_sub,
        "seal",
        cmd_model_seal,
        "seal a diagnosis pipeline trained elsewhere (a skops file): refused unless it holds "
        "only trusted types, is a StandardScaler + logistic or forest pipeline over the 30 "
        "features and clears the quality bar on the held-out split",
    )
    model_seal.add_argument("path", help="the .skops file")
    model_seal.add_argument(
        "--seed",
        type=int,
        default=0,
        help="split whose held-out cases measure it (the file must not have been trained on "
        "them; default 0)",
    )
    add(
        model_sub,
        "verify",
        cmd_model_verify,
        "check every sealed diagnosis model (signature, digests, decryption, trusted types, "
        "high-water mark against rollback); exit 1 on any failure",
    )

    mpc = add(
        model_sub,
        "multiparty",
        cmd_model_multiparty,
        "score held-out cases with the sealed logistic model among three local MPyC parties "
        "(hospital, lab, research partner) beside the plaintext model",
    )
    mpc.add_argument("--cases", type=_positive, default=10, help="held-out cases (1-143)")
    mpc.add_argument("--reveal", choices=["label", "score"], default="label")

    bench = add(sub, "bench", cmd_bench, "run a benchmark and print ratios against baselines")
    bench.add_argument(
        "target", choices=["crypto", "web", "security", "policy", "models", "killsafety"]
    )
    bench.add_argument(
        "--points", type=_positive, default=200, help="killsafety: kill points to try"
    )
    bench.add_argument("--seed", type=int, default=13, help="killsafety: random seed")
    bench.add_argument("--quick", action="store_true", help="small sizes (smoke test only)")
    bench.add_argument(
        "--part",
        action="append",
        choices=["homomorphic", "multiparty", "extraction", "training"],
        help="bench models: run only this part (repeatable)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from django.db import DatabaseError

    try:
        result: int = args.handler(args)
    except DatabaseError as exc:
        print(f"carevault: error: database: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_FAILURE
    except (CommandError, CryptoError, ValueError, OSError) as exc:
        # One line, no traceback: tracebacks can carry values, and values can be secrets.
        print(f"carevault: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return result


if __name__ == "__main__":
    sys.exit(main())
