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

Loading checks in the order that refuses earliest: the high-water mark, signature over the
manifest, name and version, ciphertext digest, decryption, plaintext digest, the manifest digest
the mark names, trusted types, and only then skops.

**Rollback.** Signatures alone do not stop an attacker who can write the model directory from
deleting the newest version (or replacing it with an older one), so that an older, validly
signed model is served again. Each sealing therefore also writes a *high-water record*: the
highest version ever sealed for the name and the SHA-256 of its manifest, encrypted and
authenticated (AES-256-GCM) under the model's own keyring, which only the master key unwraps.
Without the master key the record cannot be forged or lowered; deleting it while versions
remain is refused too. What it cannot stop is *replaying* an older copy of the record together
with the older files (the record is not a hardware counter). A store opened with an
:class:`~carevault.modelstore.anchor.Anchor` (every store of a data directory, see
``carevault.modelstore.datadir.model_store``) therefore also appends each new mark as a signed
line to the checkpoint file outside the model directory (and its external copy), and the loader
takes the higher of the two: an older ``high-water.enc`` put back with an older model is refused
by any fresh process, as is a checkpoint file that was removed.

Layout::

    models/keys/                 wrapped model keyrings and the wrapped signing key
    models/<name>/v<n>/          manifest.json, manifest.sig, model.skops.enc
    models/<name>/high-water.enc the encrypted high-water record
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
from carevault.crypto.kek import keyring_context
from carevault.crypto.keystore import DirectoryKeyStore
from carevault.platform.files import atomic_write_bytes

from .anchor import Anchor, AnchorError

FORMAT = "carevault-sealed-model/1"
PURPOSE = "sealed-model"
SIGNING_KEY_NAME = "models:signing"
PAYLOAD = "model.skops.enc"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
HIGH_WATER = "high-water.enc"
HIGH_WATER_FORMAT = "carevault-model-high-water/1"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


# What to run when a model is missing or refused, per model name (the store serves several
# packages; the name is the only thing it knows about a model).
_REMEDIES = {
    "risk-ensemble": "carevault security train",
    "encryption-policy": "carevault security train-policy",
    "diagnosis-logistic": "carevault model train",
    "diagnosis-forest": "carevault model train",
}


def remedy(name: str) -> str:
    """The command that seals a new version of ``name``, as advice for an error message."""
    command = _REMEDIES.get(name)
    if command is not None:
        return f"run `{command}`"
    return (
        "seal it again with the command that trains it (`carevault security train`, "
        "`carevault security train-policy` or `carevault model train`)"
    )


class SealedModelError(Exception):
    """A sealed model is missing, tampered with, of the wrong version or untrusted; the message
    says which (it never contains key material). ``reason`` is a short code for machines:
    missing, invalid, wrong-key, unsigned, tampered, rollback, untrusted, unreadable."""

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class RollbackError(SealedModelError):
    """The newest sealed version is gone or was replaced: an older model would be served."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="rollback")


@dataclass(frozen=True)
class SealedInfo:
    name: str
    version: int
    path: Path
    manifest: dict[str, Any]
    # False when an older version was asked for by number (never the case for version=None).
    current: bool = True


@dataclass(frozen=True)
class HighWater:
    """The highest version ever sealed for a model, and the digest of its manifest."""

    version: int
    manifest_sha256: str


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

    def __init__(
        self, root: str | os.PathLike[str], kek: KeyEncryptionKey, *, anchor: Anchor | None = None
    ) -> None:
        self.root = Path(root)
        self.kek = kek
        self.keys = DirectoryKeyStore(self.root / "keys")
        # Where new high-water marks are also recorded, signed, outside the model directory.
        self.anchor = anchor

    # -- keys ------------------------------------------------------------------------------------

    def _keyring(self, name: str, *, create: bool) -> Keyring:
        ring_name = f"model:{name}"
        if ring_name not in self.keys:
            if not create:
                if self.versions(name) or (self._dir(name) / HIGH_WATER).exists():
                    # Sealed files without their key: the key was deleted, which is an attack
                    # on the store (or a partial restore), not a model that was never trained.
                    raise SealedModelError(
                        f"the key of model {name!r} is missing although versions are sealed "
                        "(deleted, or a partial restore)",
                        reason="tampered",
                    )
                raise SealedModelError(
                    f"no key for model {name!r}: it was never sealed here", reason="missing"
                )
            ring = Keyring.generate(ring_name, Suite.AES_256_GCM)
            self.keys.put(ring_name, wrap_keyring(ring, self.kek))
            return ring
        try:
            return unwrap_keyring(self.keys.get(ring_name), self.kek, ring_name)
        except CryptoError:
            raise SealedModelError(
                f"the key of model {name!r} does not open with this master key", reason="wrong-key"
            ) from None

    def _signing_key(self, *, create: bool) -> SigningKey:
        context = keyring_context(SIGNING_KEY_NAME)
        if SIGNING_KEY_NAME not in self.keys:
            if not create:
                # Only asked for when a sealed version is being verified: its key is gone.
                raise SealedModelError(
                    "the model signing key is missing although models are sealed (deleted, or "
                    "a partial restore)",
                    reason="tampered",
                )
            key = SigningKey.generate("Ed25519")
            self.keys.put(SIGNING_KEY_NAME, self.kek.wrap(key.private_bytes().expose(), context))
            return key
        try:
            secret = SecretBytes(self.kek.unwrap(self.keys.get(SIGNING_KEY_NAME), context))
            return SigningKey.from_private_bytes("Ed25519", secret)
        except CryptoError:
            raise SealedModelError(
                "the model signing key does not open with this master key", reason="wrong-key"
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
            raise SealedModelError(
                f"refusing to seal {name!r}: untrusted types {untrusted}", reason="untrusted"
            )
        signer = self._signing_key(create=True)
        with self._locked(name):
            ring = self._keyring(name, create=True)
            # A record that does not open stops sealing too: writing a fresh one over it would
            # launder whatever was done to the directory.
            mark = self._read_high_water(name, ring)
            # Never reuse the number of a deleted version: its old, validly signed files could
            # then be put back in place of the new ones.
            floor = self._anchored_mark(name)
            version = (
                max(
                    [
                        *self.versions(name),
                        mark.version if mark else 0,
                        floor.version if floor else 0,
                    ]
                )
                + 1
            )
            ciphertext = ring.encrypt(plaintext, {"model": name, "version": version})
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
            manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode()
            record = self._seal_high_water(name, ring, HighWater(version, _sha256(manifest_bytes)))
            # Persist the keyring's encryption count (its GCM nonce budget) with the model.
            self.keys.put(ring.name, wrap_keyring(ring, self.kek))
            final = self._dir(name) / f"v{version}"
            staging = Path(tempfile.mkdtemp(prefix=f".v{version}.", dir=self._dir(name)))
            try:
                atomic_write_bytes(staging / PAYLOAD, ciphertext)
                atomic_write_bytes(staging / MANIFEST, manifest_bytes)
                atomic_write_bytes(staging / SIGNATURE, signature.to_text().encode())
                os.chmod(staging, 0o700)
                os.rename(staging, final)  # all three files appear at once, or none
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            # The mark goes up only once the version exists. A crash in between leaves a
            # version above the mark, which loads (its signature still has to verify); the
            # other order would leave a mark pointing at nothing and refuse every load.
            atomic_write_bytes(self._dir(name) / HIGH_WATER, record)
            if self.anchor is not None:
                # After the record: a crash in between leaves the anchor one mark behind, which
                # only weakens it to the record's own protection until the next sealing.
                self.anchor.append(
                    "model",
                    {"model": name, "version": version, "manifest_sha256": _sha256(manifest_bytes)},
                )
        return SealedInfo(name, version, final, manifest)

    def high_water(self, name: str) -> HighWater | None:
        """The verified high-water record of ``name`` (None when it was never sealed here)."""
        if not (self._dir(name) / HIGH_WATER).exists():
            return None
        return self._read_high_water(name, self._keyring(name, create=False))

    def inspect(self, name: str, version: int | None = None) -> SealedInfo:
        """The verified manifest of a sealed model (signature checked; payload not opened)."""
        number, directory, mark = self._locate(name, version)
        manifest, manifest_sha256 = self._verified_manifest(name, number, directory)
        self._check_mark(name, number, manifest_sha256, mark)
        return SealedInfo(name, number, directory, manifest, current=_is_current(number, mark))

    def load(
        self, name: str, version: int | None = None, *, trusted_types: Iterable[str]
    ) -> tuple[Any, SealedInfo]:
        """The model and its manifest; :class:`SealedModelError` if anything does not check out.
        ``trusted_types`` is the caller's list: what the manifest claims is not trusted."""
        number, directory, mark = self._locate(name, version)
        manifest, manifest_sha256 = self._verified_manifest(name, number, directory)
        label = f"model {name!r} v{number}"
        try:
            ciphertext = (directory / PAYLOAD).read_bytes()
        except FileNotFoundError:
            raise SealedModelError(
                f"{label}: the payload file is missing", reason="tampered"
            ) from None
        if _sha256(ciphertext) != manifest["payload"]["sha256"]:
            raise SealedModelError(
                f"{label}: the payload does not match its signed digest", reason="tampered"
            )
        ring = self._keyring(name, create=False)
        try:
            plaintext = ring.decrypt(ciphertext, {"model": name, "version": number})
        except DecryptionError:
            raise SealedModelError(
                f"{label}: the payload does not decrypt", reason="tampered"
            ) from None
        if _sha256(plaintext) != manifest["plaintext_sha256"]:
            raise SealedModelError(
                f"{label}: the decrypted model does not match its digest", reason="tampered"
            )
        # After decryption, so that a payload moved under another version fails as undecryptable
        # even when someone re-signed its manifest; still before anything is deserialised.
        self._check_mark(name, number, manifest_sha256, mark)
        allowed = set(trusted_types)
        untrusted = sorted(set(sio.get_untrusted_types(data=plaintext)) - allowed)
        if untrusted:
            raise SealedModelError(
                f"{label}: refusing to load untrusted types {untrusted}", reason="untrusted"
            )
        try:
            obj = sio.loads(plaintext, trusted=sorted(allowed))
        except Exception as exc:  # skops raises many types; report one
            raise SealedModelError(
                f"{label}: skops could not load it ({type(exc).__name__})", reason="unreadable"
            ) from None
        info = SealedInfo(name, number, directory, manifest, current=_is_current(number, mark))
        return obj, info

    # -- helpers ---------------------------------------------------------------------------------

    def _seal_high_water(self, name: str, ring: Keyring, mark: HighWater) -> bytes:
        record = {
            "format": HIGH_WATER_FORMAT,
            "model": name,
            "version": mark.version,
            "manifest_sha256": mark.manifest_sha256,
        }
        return ring.encrypt(json.dumps(record, sort_keys=True).encode(), _high_water_context(name))

    def _read_high_water(self, name: str, ring: Keyring) -> HighWater | None:
        try:
            blob = (self._dir(name) / HIGH_WATER).read_bytes()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(ring.decrypt(blob, _high_water_context(name)))
            mark = HighWater(int(record["version"]), str(record["manifest_sha256"]))
            if record.get("format") != HIGH_WATER_FORMAT or record.get("model") != name:
                raise ValueError
        except (CryptoError, ValueError, KeyError, TypeError):
            raise SealedModelError(
                f"model {name!r}: the high-water record does not open (tampered with, or from "
                f"another installation); {remedy(name)} once the directory is checked",
                reason="tampered",
            ) from None
        return mark

    def _locate(self, name: str, version: int | None) -> tuple[int, Path, HighWater | None]:
        known = self.versions(name)
        has_mark = (self._dir(name) / HIGH_WATER).exists()
        if not known and not has_mark:
            raise SealedModelError(
                f"no sealed model {name!r} in {self.root}: {remedy(name)} first", reason="missing"
            )
        mark = self._read_high_water(name, self._keyring(name, create=False))
        if mark is None:
            # Versions but no record: the record was deleted to hide a rollback (or the model
            # was sealed before records existed). Sealing a new version writes one.
            raise RollbackError(
                f"model {name!r} has no high-water record, so a rollback cannot be ruled out: "
                f"refusing to load it; {remedy(name)} to seal a new version"
            )
        floor = self._anchored_mark(name)
        if floor is not None and (
            floor.version > mark.version
            or (floor.version == mark.version and floor.manifest_sha256 != mark.manifest_sha256)
        ):
            raise RollbackError(
                f"model {name!r}: the high-water record says v{mark.version} but the signed "
                f"checkpoint outside the model directory says v{floor.version} (an older record "
                f"put back with older files): refusing to load; {remedy(name)} once the "
                "directory is checked"
            )
        newest = max(known, default=0)
        if newest < mark.version:
            now = f"v{newest}" if known else "nothing"
            raise RollbackError(
                f"model {name!r}: its newest sealed version v{mark.version} is missing (rolled "
                f"back or deleted; {now} left): refusing to load an older one; {remedy(name)} "
                "to seal a new version"
            )
        number = newest if version is None else version
        if number not in known:
            have = ", ".join(f"v{v}" for v in known)
            raise SealedModelError(f"model {name!r} has no version {number} (have {have})")
        return number, self._dir(name) / f"v{number}", mark

    def _anchored_mark(self, name: str) -> HighWater | None:
        """The highest mark of ``name`` in the anchor (None without an anchor or a mark)."""
        if self.anchor is None:
            return None
        try:
            record = self.anchor.model_floor(name)
        except AnchorError as exc:
            raise RollbackError(
                f"model {name!r}: {exc}, so a rollback cannot be ruled out: refusing to load it"
            ) from None
        if record is None:
            return None
        return HighWater(int(record["version"]), str(record["manifest_sha256"]))

    def _verified_manifest(
        self, name: str, number: int, directory: Path
    ) -> tuple[dict[str, Any], str]:
        """The manifest once its signature, name and version check out, and its digest."""
        label = f"model {name!r} v{number}"
        try:
            raw = (directory / MANIFEST).read_bytes()
        except FileNotFoundError:
            raise SealedModelError(f"{label}: the manifest is missing", reason="tampered") from None
        try:
            signature_text = (directory / SIGNATURE).read_text().strip()
        except FileNotFoundError:
            raise SealedModelError(
                f"{label} is not signed: refusing to load it", reason="unsigned"
            ) from None
        try:
            manifest = json.loads(raw)
            if not isinstance(manifest, dict):
                raise ValueError
        except ValueError:
            raise SealedModelError(
                f"{label}: the manifest is not valid JSON (tampered?)", reason="tampered"
            ) from None
        signer = self._signing_key(create=False)
        try:
            signer.verify_key.verify(manifest, Signature.from_text(signature_text), purpose=PURPOSE)
        except (InvalidSignatureError, CryptoError):
            raise SealedModelError(
                f"{label}: the signature does not verify (tampered with, or sealed by another "
                "installation)",
                reason="tampered",
            ) from None
        if manifest.get("format") != FORMAT:
            raise SealedModelError(f"{label}: unsupported format {manifest.get('format')!r}")
        if manifest.get("model") != name or manifest.get("version") != number:
            raise RollbackError(
                f"{label}: the files are those of model {manifest.get('model')!r} "
                f"v{manifest.get('version')} (wrong version: copied or rolled back)"
            )
        return manifest, _sha256(raw)

    @staticmethod
    def _check_mark(name: str, number: int, manifest_sha256: str, mark: HighWater | None) -> None:
        if mark is not None and number == mark.version and manifest_sha256 != mark.manifest_sha256:
            # Validly signed, right number, but not the seal the record names: an older seal of
            # the same number put back.
            raise RollbackError(
                f"model {name!r} v{number} is not the v{number} sealed last (an older seal put "
                "back): refusing it"
            )


def _high_water_context(name: str) -> dict[str, str]:
    return {"model": name, "record": "high-water"}


def _is_current(number: int, mark: HighWater | None) -> bool:
    return mark is None or number >= mark.version


def _skops_version() -> str:
    from importlib.metadata import version

    return version("skops")
