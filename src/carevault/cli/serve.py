"""``carevault serve``: CareVault under gunicorn (``carevault demo`` serves the same way)."""

from __future__ import annotations

import argparse
import os
import sys

from carevault import config
from carevault.cli._common import Commands, add_command, positive
from carevault.cli._django import django_setup, migrate


def exec_gunicorn(host: str, port: int, *, workers: int, tls: bool = False) -> int:
    """Replace this process with gunicorn serving the web app (returns only on failure)."""
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
    return exec_gunicorn(args.host, args.port, workers=args.workers, tls=args.tls)


def register(commands: Commands) -> None:
    serve = add_command(commands, "serve", cmd_serve, "serve CareVault with gunicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=positive, default=8000)
    serve.add_argument("--workers", type=positive, default=2)
    serve.add_argument("--tls", action="store_true", help="HTTPS with a local certificate")
