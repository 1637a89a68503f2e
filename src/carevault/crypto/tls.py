"""A locally generated TLS certificate for deployments without a TLS-terminating proxy
(`carevault serve --tls`). Self-signed: browsers warn until it is trusted (or replaced by a
certificate from the hospital's CA, placed at the same paths)."""

from __future__ import annotations

from pathlib import Path

from carevault.platform.files import atomic_write_bytes

from ._primitives import self_signed_tls_certificate

DEFAULT_HOSTS = ["localhost", "127.0.0.1", "::1"]


def ensure_certificate(directory: Path, hostnames: list[str] | None = None) -> tuple[Path, Path]:
    """(certificate, key) paths in ``directory``, created on first use (key owner-only)."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if not (cert_path.exists() and key_path.exists()):
        cert, key = self_signed_tls_certificate(hostnames or DEFAULT_HOSTS, days=365)
        atomic_write_bytes(key_path, key, mode=0o600)
        atomic_write_bytes(cert_path, cert, mode=0o644)
    return cert_path, key_path
