"""Versioned keys: states, rotation, nonce budgets, crypto-shredding (Tink's keyset model).

A :class:`Keyring` holds the versions of one logical key (a patient's data key, the master key,
the server's hybrid key). Exactly one version is *primary* and encrypts by default; a write that
asks for another suite (the adaptive policy, issue 6) is sealed by that suite's one *active*
version, which the owner adds with :meth:`Keyring.add_suite` the first time the suite is wanted.
Older versions stay *decrypt-only* so data written before a rotation stays readable; a
*disabled* version refuses to decrypt until re-enabled; a *destroyed* version has lost its
material for good, so whatever it protected is unrecoverable (crypto-shredding). Versions below
``min_decrypt_version`` are refused too, which lets an operator cut off old keys once
re-encryption has finished.

Every envelope names the version that wrote it, so any mix of versions and suites decrypts.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from .canonical import Context, RowContext, context_bytes
from .envelope import HEADER_BYTES, MAX_KEY_ID, header_bytes, key_id_of
from .errors import (
    ConfigurationError,
    DecryptionError,
    KeyStateError,
    NonceBudgetExhaustedError,
)
from .keys import KeyMaterial
from .suites import Suite

# NIST SP 800-38D 8.3: with random 96-bit nonces, at most 2^32 encryptions under one key.
GCM_NONCE_BUDGET = 2**32
KEYRING_FORMAT = 1


class KeyState(enum.Enum):
    PRIMARY = "primary"
    # Encrypts when its suite is asked for by name (one per suite besides the primary's).
    ACTIVE = "active"
    DECRYPT_ONLY = "decrypt-only"
    DISABLED = "disabled"
    DESTROYED = "destroyed"


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key version: never its material."""

    version: int
    suite: Suite
    state: KeyState
    created_at: str
    encryptions: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "suite": self.suite.label,
            "state": self.state.value,
            "created_at": self.created_at,
            "encryptions": self.encryptions,
        }


_DECRYPTABLE = frozenset({KeyState.PRIMARY, KeyState.ACTIVE, KeyState.DECRYPT_ONLY})


class _Version:
    __slots__ = (
        "created_at",
        "encryptions",
        "header",
        "material",
        "sealer",
        "state",
        "suite",
        "symmetric",
        "version",
    )

    def __init__(
        self,
        version: int,
        suite: Suite,
        state: KeyState,
        material: KeyMaterial | None,
        created_at: str,
        encryptions: int = 0,
    ) -> None:
        self.version = version
        self.suite = suite
        self.state = state
        self.material = material
        self.created_at = created_at
        self.encryptions = encryptions
        # Precomputed: every envelope this version writes starts with exactly these bytes.
        self.header = header_bytes(suite, version)
        self.sealer = material.envelope_sealer if material is not None else None
        self.symmetric = suite.is_symmetric  # GCM nonce budgets apply to symmetric keys only

    def info(self) -> KeyInfo:
        return KeyInfo(self.version, self.suite, self.state, self.created_at, self.encryptions)


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


class Keyring:
    """The versions of one logical key. Create with :meth:`generate` or :meth:`from_json`."""

    def __init__(
        self, name: str, *, nonce_budget: int = GCM_NONCE_BUDGET, auto_rotate: bool = True
    ) -> None:
        if not name or not isinstance(name, str):
            raise ConfigurationError("a keyring needs a non-empty name")
        if not 1 <= nonce_budget <= GCM_NONCE_BUDGET:
            raise ConfigurationError(f"nonce budget must be between 1 and 2^32, got {nonce_budget}")
        self.name = name
        self.nonce_budget = nonce_budget
        # When the primary's budget runs out: rotate on the spot (default) or refuse to encrypt.
        self.auto_rotate = auto_rotate
        self._min_decrypt_version = 1
        self._versions: dict[int, _Version] = {}
        self._primary: int | None = None
        # The version that encrypts for each suite other than the primary's (state ACTIVE).
        self._active: dict[Suite, int] = {}
        # Derived from _versions on every change: the versions that may decrypt right now, by
        # the exact header they write (so one lookup checks magic, format, suite and version).
        # Keeps state checks off the decryption hot path.
        self._openers: dict[bytes, Callable[[bytes | memoryview, int, bytes], bytes]] = {}
        # Likewise the versions that encrypt, by the suite asked for (None: the primary's).
        self._sealing: dict[Suite | None, _Version] = {}
        self._lock = threading.Lock()
        # Called after every change of state (rotation, counter reaching the budget), so the
        # owner can persist the keyring; the crypto core itself never does I/O.
        self.on_change: Callable[[Keyring], None] | None = None

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        name: str,
        suite: Suite | str = Suite.AES_256_GCM,
        *,
        nonce_budget: int = GCM_NONCE_BUDGET,
        auto_rotate: bool = True,
    ) -> Keyring:
        ring = cls(name, nonce_budget=nonce_budget, auto_rotate=auto_rotate)
        ring.rotate(suite)
        return ring

    def __repr__(self) -> str:
        return f"<Keyring {self.name!r} primary=v{self._primary} versions={len(self._versions)}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("keyrings cannot be pickled; wrap them with a key-encryption key")

    # -- inspection -----------------------------------------------------------------------------

    @property
    def primary(self) -> KeyInfo:
        if self._primary is None:
            raise KeyStateError(f"keyring {self.name!r} has no primary key")
        return self._versions[self._primary].info()

    @property
    def min_decrypt_version(self) -> int:
        """Versions below this one refuse to decrypt."""
        return self._min_decrypt_version

    @min_decrypt_version.setter
    def min_decrypt_version(self, version: int) -> None:
        # A property, not a plain attribute: the openers must follow every assignment, or a
        # version retired by `ring.min_decrypt_version = n` would quietly keep decrypting.
        self._min_decrypt_version = version
        self._refresh()

    def versions(self) -> list[KeyInfo]:
        return [v.info() for v in sorted(self._versions.values(), key=lambda v: v.version)]

    def rotation_due(self) -> bool:
        """True once the primary has used half its nonce budget: rotate at leisure."""
        if self._primary is None:
            return True
        primary = self._versions[self._primary]
        return primary.suite.is_symmetric and primary.encryptions >= self.nonce_budget // 2

    def encrypting_suites(self) -> frozenset[Suite]:
        """The suites this keyring can encrypt under right now (the primary's and the active)."""
        suites = set(self._active)
        if self._primary is not None:
            suites.add(self._versions[self._primary].suite)
        return frozenset(suites)

    def can_encrypt(self, suite: Suite | str) -> bool:
        return Suite.parse(suite) in self.encrypting_suites()

    # -- encryption -----------------------------------------------------------------------------

    def _encrypting_locked(self, suite: Suite | None) -> _Version:
        if self._primary is None:
            raise KeyStateError(f"keyring {self.name!r} has no primary key")
        primary = self._versions[self._primary]
        if suite is None or suite is primary.suite:
            return primary
        number = self._active.get(suite)
        if number is None:
            # Adding a version is a change the owner must persist under its own lock (two
            # processes adding one each would write conflicting version numbers): never here.
            raise KeyStateError(
                f"keyring {self.name!r} has no active {suite.label} key; add one with add_suite"
            )
        return self._versions[number]

    def encrypt(self, plaintext: bytes, context: Context, *, suite: Suite | None = None) -> bytes:
        """Seal ``plaintext`` bound to ``context``, under the primary key or, when ``suite`` is
        given, under that suite's active version (:class:`KeyStateError` if it has none)."""
        if not isinstance(plaintext, bytes | bytearray):
            raise TypeError("plaintext must be bytes")
        # Encode the context before taking the lock: it is the costly part and needs no lock.
        aad_tail = b"\x00" + context_bytes(context)
        header, sealer = self._take(suite)
        data = plaintext if type(plaintext) is bytes else bytes(plaintext)
        return sealer(header, data, header + aad_tail)

    def row(self, context: Mapping[str, str | int], *, suite: Suite | None = None) -> RowCipher:
        """A :class:`RowCipher` for the fields of one row: ``context`` is the row's (e.g. table,
        row, patient: everything but the column), encoded once; each field adds its column."""
        return RowCipher(self, RowContext(context), suite)

    def _take(self, suite: Suite | None) -> tuple[bytes, Callable[[bytes, bytes, bytes], bytes]]:
        """The header and sealer of the version that encrypts for ``suite``, with one
        encryption counted against its nonce budget (rotating first if it is used up)."""
        with self._lock:
            # The common case, in as few steps as it takes: an encrypting version with budget.
            version = self._sealing.get(suite)
            if version is not None and version.sealer is not None:
                if not version.symmetric:
                    return version.header, version.sealer
                if version.encryptions + 1 < self.nonce_budget:
                    version.encryptions += 1
                    return version.header, version.sealer
        rotated = exhausted = False
        with self._lock:
            version = self._encrypting_locked(suite)
            if version.symmetric:
                if version.encryptions >= self.nonce_budget:
                    if not self.auto_rotate:
                        raise NonceBudgetExhaustedError(
                            f"key v{version.version} of {self.name!r} has used its nonce "
                            "budget; rotate the keyring before encrypting again"
                        )
                    # Rotating here, not failing, is what keeps a busy key from causing downtime.
                    if version.state is KeyState.PRIMARY:
                        version = self._rotate_locked(None)
                    else:
                        version = self._add_active_locked(version.suite)
                    rotated = True
                version.encryptions += 1
                # Reaching the budget is a change of state the owner must persist (on_change).
                exhausted = version.encryptions == self.nonce_budget
            sealer, header = version.sealer, version.header
        if rotated or exhausted:
            self._changed()
        assert sealer is not None  # an encrypting key always has material
        return header, sealer

    def decrypt(self, ciphertext: bytes | memoryview, context: Context) -> bytes:
        """Open an envelope written by any usable version; :class:`DecryptionError` otherwise."""
        if len(ciphertext) < HEADER_BYTES:
            raise DecryptionError()
        header = bytes(ciphertext[:HEADER_BYTES])
        opener = self._openers.get(header)
        if opener is None:
            raise DecryptionError()
        return opener(ciphertext, HEADER_BYTES, header + b"\x00" + context_bytes(context))

    def needs_reencrypt(
        self, ciphertext: bytes | memoryview, *, suite: Suite | None = None
    ) -> bool:
        """True when the envelope was written by a version other than the one that encrypts
        for ``suite`` (the primary when None)."""
        with self._lock:
            target = self._encrypting_locked(suite).version
        return key_id_of(ciphertext) != target

    def reencrypt(
        self, ciphertext: bytes | memoryview, context: Context, *, suite: Suite | None = None
    ) -> bytes:
        """The same plaintext sealed under the primary key, or ``suite``'s active version
        (unchanged if already so)."""
        if not self.needs_reencrypt(ciphertext, suite=suite):
            return bytes(ciphertext)
        return self.encrypt(self.decrypt(ciphertext, context), context, suite=suite)

    # -- lifecycle ------------------------------------------------------------------------------

    def rotate(self, suite: Suite | str | None = None) -> KeyInfo:
        """Add a new primary version (same suite unless given); the old primary decrypts only."""
        with self._lock:
            new = self._rotate_locked(suite)
        self._changed()
        return new.info()

    def add_suite(self, suite: Suite | str) -> KeyInfo | None:
        """Give ``suite`` an active version (new key material); None if it can encrypt already.

        The owner calls this on a private copy under its own lock and persists the result, so
        concurrent writers never add two versions for one suite."""
        chosen = Suite.parse(suite)
        with self._lock:
            if self._primary is None:
                raise KeyStateError(f"keyring {self.name!r} has no primary key")
            if chosen is self._versions[self._primary].suite or chosen in self._active:
                return None
            new = self._add_active_locked(chosen)
        self._changed()
        return new.info()

    def _add_active_locked(self, suite: Suite) -> _Version:
        number = self._next_number()
        new = _Version(number, suite, KeyState.ACTIVE, KeyMaterial.generate(suite), _now())
        old = self._active.get(suite)
        if old is not None:
            self._versions[old].state = KeyState.DECRYPT_ONLY
        self._versions[number] = new
        self._active[suite] = number
        self._refresh()
        return new

    def _next_number(self) -> int:
        number = max(self._versions, default=0) + 1
        if number > MAX_KEY_ID:
            raise KeyStateError("key versions exhausted")
        return number

    def _rotate_locked(self, suite: Suite | str | None) -> _Version:
        if suite is None:
            if self._primary is None:
                raise ConfigurationError("the first key of a keyring needs a suite")
            chosen = self._versions[self._primary].suite
        else:
            chosen = Suite.parse(suite)
        number = self._next_number()
        new = _Version(number, chosen, KeyState.PRIMARY, KeyMaterial.generate(chosen), _now())
        if self._primary is not None:
            self._versions[self._primary].state = KeyState.DECRYPT_ONLY
        # A rotation retires every encrypting version: each suite gets fresh material when the
        # policy next asks for it (add_suite).
        for active in self._active.values():
            self._versions[active].state = KeyState.DECRYPT_ONLY
        self._active.clear()
        self._versions[number] = new
        self._primary = number
        self._refresh()
        return new

    def disable(self, version: int) -> None:
        """Stop a non-primary version from decrypting (reversible with :meth:`enable`)."""
        target = self._get(version)
        if target.state in (KeyState.PRIMARY, KeyState.ACTIVE):
            raise KeyStateError("an encrypting key cannot be disabled; rotate first")
        if target.state is KeyState.DESTROYED:
            raise KeyStateError(f"key v{version} is destroyed")
        target.state = KeyState.DISABLED
        self._changed()

    def enable(self, version: int) -> None:
        target = self._get(version)
        if target.state is KeyState.DESTROYED:
            raise KeyStateError(f"key v{version} is destroyed and cannot be re-enabled")
        if target.state is KeyState.DISABLED:
            target.state = KeyState.DECRYPT_ONLY
            self._changed()

    def destroy(self, version: int) -> None:
        """Forget a version's material for good: its ciphertexts become unrecoverable."""
        target = self._get(version)
        with self._lock:
            if target.state is KeyState.PRIMARY:
                self._primary = None
            if target.state is KeyState.ACTIVE:
                del self._active[target.suite]
            target.state = KeyState.DESTROYED
            target.material = None
            target.sealer = None
        self._changed()

    def shred(self) -> None:
        """Crypto-shredding: destroy every version (e.g. a patient's right to erasure)."""
        for number in list(self._versions):
            self.destroy(number)

    def set_min_decrypt_version(self, version: int) -> None:
        if self._primary is not None and version > self._primary:
            raise KeyStateError("the minimum decryption version cannot exceed the primary")
        self.min_decrypt_version = max(1, version)
        self._changed()

    def public(self) -> Keyring:
        """A copy that can encrypt to this keyring but not decrypt (asymmetric suites only)."""
        copy = Keyring(self.name, nonce_budget=self.nonce_budget)
        copy.min_decrypt_version = self.min_decrypt_version
        for v in self._versions.values():
            material = v.material.public() if v.material is not None else None
            copy._versions[v.version] = _Version(
                v.version, v.suite, v.state, material, v.created_at, v.encryptions
            )
        copy._primary = self._primary
        copy._active = dict(self._active)
        copy._refresh()
        return copy

    # -- serialisation (the result holds secrets: hand it only to a key-encryption key) ---------

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": KEYRING_FORMAT,
                "name": self.name,
                "nonce_budget": self.nonce_budget,
                "min_decrypt_version": self.min_decrypt_version,
                "versions": [
                    {
                        **v.info().as_dict(),
                        "material": v.material.export() if v.material is not None else None,
                    }
                    for v in sorted(self._versions.values(), key=lambda v: v.version)
                ],
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Keyring:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ConfigurationError("keyring data is not valid JSON") from None
        try:
            return cls._from_doc(doc)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # AttributeError: JSON that is not an object where one is expected (e.g. `[]`).
            # Messages name the field, never a value: values may be key material.
            raise ConfigurationError(f"keyring data is malformed ({type(exc).__name__})") from None

    @classmethod
    def _from_doc(cls, doc: dict[str, Any]) -> Keyring:
        if doc.get("format") != KEYRING_FORMAT:
            raise ConfigurationError("unsupported keyring format")
        ring = cls(str(doc["name"]), nonce_budget=int(doc["nonce_budget"]))
        ring.min_decrypt_version = int(doc["min_decrypt_version"])
        for item in doc["versions"]:
            state = KeyState(item["state"])
            suite = Suite.parse(item["suite"])
            raw = item["material"]
            material = (
                None if state is KeyState.DESTROYED or raw is None else KeyMaterial.load(suite, raw)
            )
            number = int(item["version"])
            if number in ring._versions or not 1 <= number <= MAX_KEY_ID:
                raise ConfigurationError(f"keyring has a duplicate or invalid version {number}")
            ring._versions[number] = _Version(
                number, suite, state, material, str(item["created_at"]), int(item["encryptions"])
            )
            if state is KeyState.PRIMARY:
                if ring._primary is not None:
                    raise ConfigurationError("keyring has more than one primary key")
                if material is None:
                    raise ConfigurationError("the primary key has no material")
                ring._primary = number
            if state is KeyState.ACTIVE:
                if suite in ring._active or material is None:
                    raise ConfigurationError(f"keyring has a bad active {suite.label} key")
                ring._active[suite] = number
        if ring._primary is not None and ring._versions[ring._primary].suite in ring._active:
            raise ConfigurationError("keyring has two encrypting keys for one suite")
        ring._refresh()
        return ring

    # -- helpers --------------------------------------------------------------------------------

    def _get(self, version: int) -> _Version:
        try:
            return self._versions[version]
        except KeyError:
            raise KeyStateError(f"keyring {self.name!r} has no version {version}") from None

    def _refresh(self) -> None:
        sealing: dict[Suite | None, _Version] = {
            suite: self._versions[number] for suite, number in self._active.items()
        }
        if self._primary is not None:
            primary = self._versions[self._primary]
            sealing[None] = sealing[primary.suite] = primary
        self._sealing = sealing
        self._openers = {
            v.header: v.material.envelope_opener
            for v in self._versions.values()
            if v.state in _DECRYPTABLE
            and v.version >= self.min_decrypt_version
            and v.material is not None
            and v.material.can_decrypt
        }

    def _changed(self) -> None:
        self._refresh()
        if self.on_change is not None:
            self.on_change(self)

    def __iter__(self) -> Iterator[KeyInfo]:
        return iter(self.versions())


class RowCipher:
    """Seals and opens the fields of one row: the row's context is encoded once, and each field
    adds only its column (see :class:`~carevault.crypto.canonical.RowContext`).

    What it writes is exactly what :meth:`Keyring.encrypt` writes for the context
    ``{**row, "column": column}`` (same header, same associated data), so either API opens the
    other's envelopes. Every seal counts against the nonce budget and follows rotations; every
    open sees the keyring's current states (a version disabled or destroyed meanwhile refuses),
    and every failure is the one opaque :class:`DecryptionError`. Create with
    :meth:`Keyring.row`, one per row (it holds no key material of its own).
    """

    __slots__ = ("_context", "_ring", "_suite")

    def __init__(self, ring: Keyring, context: RowContext, suite: Suite | None) -> None:
        self._ring = ring
        self._context = context
        self._suite = suite

    def __repr__(self) -> str:
        return f"<RowCipher {self._ring.name!r} {self._context!r}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("row ciphers cannot be pickled")

    def seal(self, column: str, plaintext: bytes) -> bytes:
        """``plaintext`` sealed for ``column`` of this row."""
        if type(plaintext) is not bytes:
            if not isinstance(plaintext, bytearray):
                raise TypeError("plaintext must be bytes")
            plaintext = bytes(plaintext)
        tail = b"\x00" + self._context.encode(column)
        header, sealer = self._ring._take(self._suite)
        return sealer(header, plaintext, header + tail)

    def open(self, column: str, envelope: bytes | memoryview) -> bytes:
        """The plaintext of ``column`` of this row; :class:`DecryptionError` otherwise."""
        header = envelope[:HEADER_BYTES]
        if type(header) is not bytes:
            header = bytes(header)
        # A short envelope has a short "header", which names no opener.
        opener = self._ring._openers.get(header)
        if opener is None:
            raise DecryptionError()
        return opener(envelope, HEADER_BYTES, header + b"\x00" + self._context.encode(column))
