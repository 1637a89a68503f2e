"""``carevault serve``: CareVault under gunicorn (``carevault demo`` serves the same way), with
one background worker beside it (``--no-worker``: the workers run elsewhere)."""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys

from carevault import config
from carevault.cli._common import Commands, add_command, positive
from carevault.cli._django import django_setup, migrate


def _end_with_parent() -> None:
    """In the worker's child process, before it runs: SIGTERM it when its parent (gunicorn,
    which replaces this process) ends, however it ends (Linux; elsewhere Ctrl+C still reaches
    both, being one process group)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def start_worker() -> subprocess.Popen[bytes] | None:
    """One `carevault worker` beside the web server, so that a clinic on one machine gets its
    background work done (re-encryption, audit sealing, retraining). None when the tasks run in
    the process that queues them (CAREVAULT_TASKS=immediate)."""
    from django.conf import settings

    if settings.TASKS_MODE == "immediate":
        return None
    worker = subprocess.Popen(
        [sys.executable, "-m", "carevault.cli", "worker"],
        preexec_fn=_end_with_parent,  # this process has started no thread yet
    )
    print(f"background worker started (pid {worker.pid}; --no-worker to skip)", flush=True)
    return worker


def exec_gunicorn(
    host: str, port: int, *, workers: int, tls: bool = False, worker: bool = True
) -> int:
    """Replace this process with gunicorn serving the web app (returns only on failure), after
    starting a background worker (``worker``) that ends with it."""
    if worker:
        start_worker()
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
    django_setup()
    migrate()
    return exec_gunicorn(
        args.host, args.port, workers=args.workers, tls=args.tls, worker=not args.no_worker
    )


def register(commands: Commands) -> None:
    serve = add_command(commands, "serve", cmd_serve, "serve CareVault with gunicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=positive, default=8000)
    serve.add_argument("--workers", type=positive, default=2)
    serve.add_argument("--tls", action="store_true", help="HTTPS with a local certificate")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not start a background worker beside the server (workers run elsewhere: "
        "`carevault worker`)",
    )
