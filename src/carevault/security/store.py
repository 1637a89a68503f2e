"""Sealed model storage: trained detectors at rest are encrypted, signed and loaded safely.

A model is stolen or poisoned through its file as easily as through its API: a swapped pickle
runs the attacker's code on load, an edited one quietly stops detecting. So a stored model is

* serialised with **skops** (never pickle or joblib on load) and loaded only if every type in it
  is on an explicit trusted list;
* **encrypted** with AES-256-GCM through a per-model :class:`~carevault.crypto.Keyring`, bound to
  ``{"model": name, "version": n}``: a blob copied under another name or version fails to open;
* **signed** with Ed25519 over a manifest of SHA-256 digests (ciphertext and plaintext), its
  name, version and trusted types;
* keyed by keys **wrapped by the master key** and kept beside it in
  ``CAREVAULT_DATA_DIR/models/keys`` (a :class:`~carevault.crypto.keystore.DirectoryKeyStore`,
  so ``carevault keys rotate`` rewraps them with the rest).

Loading checks in the order that refuses earliest: signature over the manifest, name and
version, ciphertext digest, decryption, plaintext digest, trusted types, and only then skops.

Layout::

    models/keys/                 wrapped model keyrings and the wrapped signing key
    models/<name>/v<n>/          manifest.json, manifest.sig, model.skops.enc
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import skops.io as sio

from carevault.crypto import (
    CryptoError,
    DecryptionError,
    InvalidSignatureError,
    KeyEncryptionKey,
    Keyring,
    SecretBytes,
    Signature,
    SigningKey,
    Suite,
    unwrap_keyring,
    wrap_keyring,
)
from carevault.crypto._files import atomic_write_bytes
from carevault.crypto.kek import keyring_context
from carevault.crypto.keystore import DirectoryKeyStore

FORMAT = "carevault-sealed-model/1"
PURPOSE = "sealed-model"
SIGNING_KEY_NAME = "models:signing"
PAYLOAD = "model.skops.enc"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class SealedModelError(Exception):
    """A sealed model is missing, tampered with, of the wrong version or untrusted; the message
    says which (it never contains key material)."""


@dataclass(frozen=True)
class SealedInfo:
    name: str
    version: int
    path: Path
    manifest: dict[str, Any]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def signable(value: Any) -> Any:
    """``value`` made canonical-encodable: floats (which have no canonical text form) become
    short decimal strings; tuples become lists."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return format(value, ".6g")
    if isinstance(value, Mapping):
        return {str(k): signable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [signable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return signable(value.item())
    return str(value)


class ModelStore:
    """Sealed models under ``root`` (usually ``CAREVAULT_DATA_DIR/models``), keyed by ``kek``."""

    def __init__(self, root: str | os.PathLike[str], kek: KeyEncryptionKey) -> None:
        self.root = Path(root)
        self.kek = kek
        self.keys = DirectoryKeyStore(self.root / "keys")

    # -- keys ------------------------------------------------------------------------------------

    def _keyring(self, name: str, *, create: bool) -> Keyring:
        ring_name = f"model:{name}"
        if ring_name not in self.keys:
            if not create:
                raise SealedModelError(f"no key for model {name!r}: it was never sealed here")
            ring = Keyring.generate(ring_name, Suite.AES_256_GCM)
            self.keys.put(ring_name, wrap_keyring(ring, self.kek))
            return ring
        try:
            return unwrap_keyring(self.keys.get(ring_name), self.kek, ring_name)
        except CryptoError:
            raise SealedModelError(
                f"the key of model {name!r} does not open with this master key"
            ) from None

    def _signing_key(self, *, create: bool) -> SigningKey:
        context = keyring_context(SIGNING_KEY_NAME)
        if SIGNING_KEY_NAME not in self.keys:
            if not create:
                raise SealedModelError("no model signing key here: nothing was sealed yet")
            key = SigningKey.generate("Ed25519")
            self.keys.put(SIGNING_KEY_NAME, self.kek.wrap(key.private_bytes().expose(), context))
            return key
        try:
            secret = SecretBytes(self.kek.unwrap(self.keys.get(SIGNING_KEY_NAME), context))
            return SigningKey.from_private_bytes("Ed25519", secret)
        except CryptoError:
            raise SealedModelError(
                "the model signing key does not open with this master key"
            ) from None

    # -- layout ----------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        if not _NAME.match(name):
            raise SealedModelError(f"invalid model name {name!r} (lower-case letters, digits, -)")
        return self.root / name

    def versions(self, name: str) -> list[int]:
        directory = self._dir(name)
        if not directory.is_dir():
            return []
        found = []
        for child in directory.iterdir():
            match = re.fullmatch(r"v(\d+)", child.name)
            if match and child.is_dir():
                found.append(int(match.group(1)))
        return sorted(found)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        directory = self._dir(name)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(directory / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- sealing ---------------------------------------------------------------------------------

    def save(
        self,
        name: str,
        obj: Any,
        *,
        trusted_types: Iterable[str],
        metadata: Mapping[str, Any] | None = None,
    ) -> SealedInfo:
        """Seal ``obj`` as the next version of ``name``. ``trusted_types`` must cover every type
        skops finds in it (checked now, so a model that could not be loaded is never sealed)."""
        plaintext = sio.dumps(obj, compression=zipfile.ZIP_DEFLATED)
        trusted = sorted(set(trusted_types))
        untrusted = sorted(set(sio.get_untrusted_types(data=plaintext)) - set(trusted))
        if untrusted:
            raise SealedModelError(f"refusing to seal {name!r}: untrusted types {untrusted}")
        signer = self._signing_key(create=True)
        with self._locked(name):
            version = max(self.versions(name), default=0) + 1
            ring = self._keyring(name, create=True)
            ciphertext = ring.encrypt(plaintext, {"model": name, "version": version})
            # Persist the keyring's encryption count (its GCM nonce budget) with the model.
            self.keys.put(ring.name, wrap_keyring(ring, self.kek))
            manifest = {
                "format": FORMAT,
                "model": name,
                "version": version,
                "created_at": _now(),
                "payload": {
                    "file": PAYLOAD,
                    "sha256": _sha256(ciphertext),
                    "bytes": len(ciphertext),
                },
                "plaintext_sha256": _sha256(plaintext),
                "encryption": {"keyring": ring.name, "key_version": ring.primary.version},
                "serializer": f"skops {_skops_version()}",
                "signing_key_id": signer.key_id,
                "trusted_types": trusted,
                "metadata": signable(dict(metadata or {})),
            }
            signature = signer.sign(manifest, purpose=PURPOSE)
            final = self._dir(name) / f"v{version}"
            staging = Path(tempfile.mkdtemp(prefix=f".v{version}.", dir=self._dir(name)))
            try:
                atomic_write_bytes(staging / PAYLOAD, ciphertext)
                atomic_write_bytes(
                    staging / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode()
                )
                atomic_write_bytes(staging / SIGNATURE, signature.to_text().encode())
                os.chmod(staging, 0o700)
                os.rename(staging, final)  # all three files appear at once, or none
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return SealedInfo(name, version, final, manifest)

    def inspect(self, name: str, version: int | None = None) -> SealedInfo:
        """The verified manifest of a sealed model (signature checked; payload not opened)."""
        number, directory = self._locate(name, version)
        return SealedInfo(name, number, directory, self._verified_manifest(name, number, directory))

    def load(
        self, name: str, version: int | None = None, *, trusted_types: Iterable[str]
    ) -> tuple[Any, SealedInfo]:
        """The model and its manifest; :class:`SealedModelError` if anything does not check out.
        ``trusted_types`` is the caller's list: what the manifest claims is not trusted."""
        number, directory = self._locate(name, version)
        manifest = self._verified_manifest(name, number, directory)
        label = f"model {name!r} v{number}"
        try:
            ciphertext = (directory / PAYLOAD).read_bytes()
        except FileNotFoundError:
            raise SealedModelError(f"{label}: the payload file is missing") from None
        if _sha256(ciphertext) != manifest["payload"]["sha256"]:
            raise SealedModelError(f"{label}: the payload does not match its signed digest")
        ring = self._keyring(name, create=False)
        try:
            plaintext = ring.decrypt(ciphertext, {"model": name, "version": number})
        except DecryptionError:
            raise SealedModelError(f"{label}: the payload does not decrypt") from None
        if _sha256(plaintext) != manifest["plaintext_sha256"]:
            raise SealedModelError(f"{label}: the decrypted model does not match its digest")
        allowed = set(trusted_types)
        untrusted = sorted(set(sio.get_untrusted_types(data=plaintext)) - allowed)
        if untrusted:
            raise SealedModelError(f"{label}: refusing to load untrusted types {untrusted}")
        try:
            obj = sio.loads(plaintext, trusted=sorted(allowed))
        except Exception as exc:  # skops raises many types; report one
            raise SealedModelError(
                f"{label}: skops could not load it ({type(exc).__name__})"
            ) from None
        return obj, SealedInfo(name, number, directory, manifest)

    # -- helpers ---------------------------------------------------------------------------------

    def _locate(self, name: str, version: int | None) -> tuple[int, Path]:
        known = self.versions(name)
        if not known:
            raise SealedModelError(
                f"no sealed model {name!r} in {self.root}: run `carevault security train` first"
            )
        number = known[-1] if version is None else version
        if number not in known:
            have = ", ".join(f"v{v}" for v in known)
            raise SealedModelError(f"model {name!r} has no version {number} (have {have})")
        return number, self._dir(name) / f"v{number}"

    def _verified_manifest(self, name: str, number: int, directory: Path) -> dict[str, Any]:
        label = f"model {name!r} v{number}"
        try:
            raw = (directory / MANIFEST).read_bytes()
        except FileNotFoundError:
            raise SealedModelError(f"{label}: the manifest is missing") from None
        try:
            signature_text = (directory / SIGNATURE).read_text().strip()
        except FileNotFoundError:
            raise SealedModelError(f"{label} is not signed: refusing to load it") from None
        try:
            manifest = json.loads(raw)
            if not isinstance(manifest, dict):
                raise ValueError
        except ValueError:
            raise SealedModelError(f"{label}: the manifest is not valid JSON (tampered?)") from None
        signer = self._signing_key(create=False)
        try:
            signer.verify_key.verify(manifest, Signature.from_text(signature_text), purpose=PURPOSE)
        except (InvalidSignatureError, CryptoError):
            raise SealedModelError(
                f"{label}: the signature does not verify (tampered with, or sealed by another "
                "installation)"
            ) from None
        if manifest.get("format") != FORMAT:
            raise SealedModelError(f"{label}: unsupported format {manifest.get('format')!r}")
        if manifest.get("model") != name or manifest.get("version") != number:
            raise SealedModelError(
                f"{label}: the files are those of model {manifest.get('model')!r} "
                f"v{manifest.get('version')} (wrong version: copied or rolled back)"
            )
        return manifest


def _skops_version() -> str:
    from importlib.metadata import version

    return version("skops")
