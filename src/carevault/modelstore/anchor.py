"""Signed checkpoints kept outside the database: the anchor of the audit head and model marks.

The audit chain (:mod:`carevault.web.audit.log`) and the models' high-water records
(:mod:`carevault.modelstore.store`) are authenticated, but each sits where an attacker who can
write it can also rewind it: an emptied audit table with its head row reset is a valid chain of
0 entries, and an older ``high-water.enc`` put back with the older model is a valid older
state. So their state is also written here, as **signed checkpoints** in an append-only JSONL
file in the data directory (and, when configured, in a second file outside it):

* ``{"kind": "audit", "seq", "head", "count", ...}``: the audit chain's head at a moment;
* ``{"kind": "model", "model", "version", "manifest_sha256", ...}``: a model's high-water mark.

Each line is signed with the server's Ed25519 *anchor key*, wrapped by the master key in the
data directory's key store like the other keys (``carevault keys rotate`` rewraps it); its
public half is written next to the file so an external verifier needs only that. A line whose
signature does not verify is reported as forged and otherwise ignored.

API (tiny on purpose; the backup helper and ``carevault audit`` use it):

* :data:`CHECKPOINTS` -- the file's path relative to the data directory;
* :func:`checkpoints_path`, :func:`external_path` -- where the copies are;
* :class:`Anchor` -- ``append(kind, body)``, ``read()``, ``latest(kind)``, ``model_floor(name)``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carevault.crypto import (
    CryptoError,
    InvalidSignatureError,
    KeyEncryptionKey,
    SecretBytes,
    Signature,
    SigningKey,
)
from carevault.crypto.kek import keyring_context
from carevault.crypto.keystore import DirectoryKeyStore

# Where the checkpoints live, relative to the data directory (one constant: backups copy it).
CHECKPOINTS = Path("audit") / "checkpoints.jsonl"
PUBLIC_KEY = Path("audit") / "anchor-key.pub"
# A second, append-only copy outside the data directory (another disk, a mounted WORM share):
# an attacker who rewinds the data directory must reach this too.
ENV_ANCHOR_FILE = "CAREVAULT_AUDIT_ANCHOR_FILE"
KEY_NAME = "anchor:signing"
PURPOSE = "carevault-anchor"
FORMAT = "carevault-anchor/1"


def checkpoints_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / CHECKPOINTS


def external_path(environ: Mapping[str, str] | None = None) -> Path | None:
    value = (os.environ if environ is None else environ).get(ENV_ANCHOR_FILE, "").strip()
    return Path(value) if value else None


@dataclass
class AnchorState:
    """The verified records of every copy, and what was wrong with them."""

    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def latest(self, kind: str, **match: Any) -> dict[str, Any] | None:
        found = [
            r
            for r in self.records
            if r.get("kind") == kind and all(r.get(k) == v for k, v in match.items())
        ]
        if not found:
            return None
        order = "version" if kind == "model" else "seq"
        return max(found, key=lambda r: (int(r.get(order, 0)), str(r.get("at", ""))))


class Anchor:
    """The checkpoint file of a data directory (and its external copy, if any)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        kek: KeyEncryptionKey,
        *,
        local: str | os.PathLike[str] | None = None,
        external: str | os.PathLike[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.kek = kek
        self.keys = DirectoryKeyStore(self.data_dir / "keys" / "wrapped")
        self.local = Path(local) if local is not None else checkpoints_path(self.data_dir)
        self.external = Path(external) if external is not None else external_path()

    # -- the key ---------------------------------------------------------------------------------

    def _key(self, *, create: bool) -> SigningKey | None:
        context = keyring_context(KEY_NAME)
        if KEY_NAME not in self.keys:
            if not create:
                return None
            key = SigningKey.generate("Ed25519")
            self.keys.put(KEY_NAME, self.kek.wrap(key.private_bytes().expose(), context))
        else:
            secret = SecretBytes(self.kek.unwrap(self.keys.get(KEY_NAME), context))
            key = SigningKey.from_private_bytes("Ed25519", secret)
        public = self.data_dir / PUBLIC_KEY
        if not public.exists():
            public.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            public.write_text(key.verify_key.public_bytes().hex() + "\n")
        return key

    # -- writing ---------------------------------------------------------------------------------

    def append(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Sign and append one record to every copy; the record as written."""
        key = self._key(create=True)
        assert key is not None
        record: dict[str, Any] = {
            "format": FORMAT,
            "kind": kind,
            "at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "key_id": key.key_id,
            **body,
        }
        record["signature"] = key.sign(record, purpose=PURPOSE).to_text()
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        for path in (self.local, self.external):
            if path is not None:
                _append_line(path, line)
        return record

    # -- reading ---------------------------------------------------------------------------------

    def read(self) -> AnchorState:
        """Every copy's verified records (deduplicated) and the problems found: forged lines,
        a missing or shorter local file, a missing key."""
        state = AnchorState()
        local = _lines(self.local)
        external = _lines(self.external) if self.external is not None else None
        if not local and not external:
            if KEY_NAME in self.keys:
                # The key is made by the first checkpoint: checkpoints were written.
                state.problems.append(
                    f"the checkpoint file {self.local} is missing or empty although checkpoints "
                    "were written (deleted or replaced)"
                )
            return state
        key = self._key(create=False)
        if key is None:
            state.problems.append(
                "the anchor key is missing although checkpoints exist (deleted): no checkpoint "
                "can be trusted"
            )
            return state
        seen: set[str] = set()
        for label, lines in (("local", local), ("external", external or [])):
            for number, text in enumerate(lines, start=1):
                record = _verified(text, key)
                if record is None:
                    state.problems.append(
                        f"{label} checkpoint line {number}: the signature does not verify (forged)"
                    )
                    continue
                if record["signature"] not in seen:
                    seen.add(record["signature"])
                    state.records.append(record)
        if external is not None:
            valid_local = {r["signature"] for t in local if (r := _verified(t, key)) is not None}
            missing = [r for r in state.records if r["signature"] not in valid_local]
            if missing:
                state.problems.append(
                    f"{_LOCAL_BEHIND} {len(missing)} checkpoint(s) that the external anchor "
                    "holds (truncated or replaced)"
                )
        return state

    def latest(self, kind: str, **match: Any) -> dict[str, Any] | None:
        return self.read().latest(kind, **match)

    def model_floor(self, name: str) -> dict[str, Any] | None:
        """The highest anchored high-water mark of model ``name`` (None: never anchored).

        :class:`AnchorError` when the anchor itself was tampered with, a forged line included:
        an edited model line (its kind or version changed) would otherwise just drop out and
        lower the floor. Every line is verified, so a load costs one Ed25519 verification per
        line (about 1 per 100 audit entries)."""
        state = self.read()
        # A local file behind the external copy is no reason to refuse: the external copy's
        # marks count (the floor is the highest of both).
        fatal = [p for p in state.problems if not p.startswith(_LOCAL_BEHIND)]
        if fatal:
            raise AnchorError(fatal[0])
        return state.latest("model", model=name)


_LOCAL_BEHIND = "the local checkpoint file lacks"


class AnchorError(Exception):
    """The anchor cannot be trusted (its file or key was removed)."""


def _verified(text: str, key: SigningKey) -> dict[str, Any] | None:
    try:
        record = json.loads(text)
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            return None
        signature = Signature.from_text(str(record["signature"]))
        body = {k: v for k, v in record.items() if k != "signature"}
        key.verify_key.verify(body, signature, purpose=PURPOSE)
    except (ValueError, KeyError, TypeError, InvalidSignatureError, CryptoError):
        return None
    return record


def _lines(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line.strip()]


def _append_line(path: Path, line: bytes) -> None:
    """Append under a lock, synced: owner-only, never rewritten in place."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
