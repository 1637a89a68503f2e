"""The bridge between the web application and the crypto core.

* the master key-encryption key, loaded from the configured provider (dev mode creates it on
  first run in the data directory) and looked up again when its file changes, so a
  ``carevault keys rotate`` is seen by every running server without a restart (issue 13);
* per-patient keyrings, unwrapped on demand and cached per process by the digest of their
  wrapped form (a rotation changes the blob, so a stale entry can never be used);
* PHI sealing and opening bound to table / column / row / patient;
* blind indexes, service secrets, clinicians' signing keys.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from django.db import transaction
from django.db.models import F

from carevault import config
from carevault.crypto import (
    BlindIndex,
    BoundContext,
    CryptoError,
    FileMasterKeyProvider,
    InvalidSignatureError,
    KeyEncryptionKey,
    Keyring,
    RowCipher,
    SecretBytes,
    SignatureAlgorithm,
    SigningKey,
    Suite,
    VerifyKey,
    canonical_bytes,
    unwrap_keyring,
    wrap_keyring,
)
from carevault.crypto.keyring import GCM_NONCE_BUDGET
from carevault.crypto.packets import LoginKey

from .models import ClinicianKey, PatientKey, ServiceSecret

_lock = threading.Lock()
_master: KeyEncryptionKey | None = None
_keyrings: OrderedDict[tuple[str, bytes], Keyring] = OrderedDict()
_secrets: dict[str, SecretBytes] = {}
_verify_keys: dict[bytes, VerifyKey] = {}
_login_key: LoginKey | None = None
_KEYRING_CACHE = 512


_master_stamp: tuple[int, int, int] | None = None


def _file_stamp(provider: object) -> tuple[int, int, int] | None:
    """What identifies the master key file's current content: (inode, size, mtime). A rotation
    saves the file atomically (a new inode), so any change is seen at the next look."""
    if not isinstance(provider, FileMasterKeyProvider):
        return None  # an environment variable or a KMS does not change under a running process
    try:
        info = provider.path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def master() -> KeyEncryptionKey:
    """The key-encryption key (dev mode: created on first run), reloaded when its file changed.

    One ``stat`` per call: cheap next to the unwrap that follows, and what lets a process started
    before ``carevault keys rotate`` unwrap the keys rewrapped under the new version and wrap new
    keys under it (instead of reporting them as tampered, or wrapping under a version an
    operator is about to retire)."""
    global _master, _master_stamp
    provider = config.master_key_provider()
    with _lock:
        stamp = _file_stamp(provider)
        if _master is None or stamp != _master_stamp:
            if isinstance(provider, FileMasterKeyProvider) and not provider.exists():
                provider.create()
                stamp = _file_stamp(provider)
            _master = provider.load()
            _master_stamp = stamp
        return _master


def reload_master() -> bool:
    """Look the master key up again (a blob did not unwrap: perhaps it was wrapped under a
    version this process has not seen). True when what was loaded differs from before."""
    global _master, _master_stamp
    with _lock:
        before = _master
        _master, _master_stamp = None, None
    after = master()
    if before is None:
        return True
    describe = getattr(after, "keyring", None)
    previous = getattr(before, "keyring", None)
    if describe is None or previous is None:
        return after is not before
    return bool(describe.to_json() != previous.to_json())


def unwrap_current(wrapped: bytes, context: Any) -> bytes:
    """``master().unwrap``, retried once after looking the master key up again: a failure caused
    by a stale key is never reported as tampering."""
    try:
        return master().unwrap(wrapped, context)
    except CryptoError:
        if not reload_master():
            raise
    return master().unwrap(wrapped, context)


def reset_caches() -> None:
    """Forget every unwrapped key (tests; after a master rotation)."""
    global _master, _login_key, _master_stamp
    with _lock:
        _master = None
        _master_stamp = None
        _login_key = None
        _keyrings.clear()
        _secrets.clear()
        _verify_keys.clear()


def keyring_name(patient_id: uuid.UUID | str) -> str:
    return f"patient:{patient_id}"


# -- patients' data keys --------------------------------------------------------------------------


def create_patient_keyring(patient_id: uuid.UUID, suite: Suite = Suite.AES_256_GCM) -> Keyring:
    ring = Keyring.generate(keyring_name(patient_id), suite)
    PatientKey.objects.create(patient_id=patient_id, wrapped=wrap_keyring(ring, master()))
    return ring


# Within one request (or one command), a patient's keyring is looked up once: a page with fifty
# sealed fields must not read the same wrapped key fifty times. The scope is per request on
# purpose: a rotation or a crypto-shredding elsewhere is seen by the very next request.
_scope: contextvars.ContextVar[dict[str, Keyring] | None] = contextvars.ContextVar(
    "carevault_keyring_scope", default=None
)


@contextlib.contextmanager
def keyring_scope() -> Iterator[None]:
    """Remember keyrings looked up inside the block (the middleware wraps every request)."""
    token = _scope.set({})
    try:
        yield
    finally:
        _scope.reset(token)


def _forget_in_scope(patient_id: uuid.UUID | str) -> None:
    scope = _scope.get()
    if scope is not None:
        scope.pop(str(patient_id), None)


def patient_keyring(patient_id: uuid.UUID | str) -> Keyring:
    scope = _scope.get()
    if scope is not None:
        scoped = scope.get(str(patient_id))
        if scoped is not None:
            return scoped
        ring = _load_keyring(patient_id)
        scope[str(patient_id)] = ring
        return ring
    return _load_keyring(patient_id)


def _load_keyring(patient_id: uuid.UUID | str) -> Keyring:
    row = PatientKey.objects.filter(patient_id=patient_id).values_list("wrapped", flat=True)
    wrapped = bytes(row.get())
    digest = hashlib.sha256(wrapped).digest()
    cache_key = (str(patient_id), digest)
    with _lock:
        ring = _keyrings.get(cache_key)
        if ring is not None:
            _keyrings.move_to_end(cache_key)
            return ring
    try:
        ring = unwrap_keyring(wrapped, master(), keyring_name(patient_id))
    except CryptoError:
        # Stale master (rotated elsewhere)? Look it up again and read the row again once; only
        # a blob that still fails is reported (by the caller) as tampering.
        if not reload_master():
            raise
        return _load_keyring(patient_id)
    with _lock:
        _keyrings[cache_key] = ring
        while len(_keyrings) > _KEYRING_CACHE:
            _keyrings.popitem(last=False)
    return ring


def save_patient_keyring(ring: Keyring, patient_id: uuid.UUID | str) -> None:
    _forget_in_scope(patient_id)
    PatientKey.objects.filter(patient_id=patient_id).update(
        wrapped=wrap_keyring(ring, master()), encryptions=0
    )


def count_encryptions(patient_id: uuid.UUID | str, n: int) -> None:
    """Add ``n`` to the patient's shared counter; rotate the data key once the budget is used.

    Each process's keyring counts its own encryptions; this counter adds them up across
    processes so the NIST limit holds for the key, not for each process.
    """
    PatientKey.objects.filter(patient_id=patient_id).update(encryptions=F("encryptions") + n)
    used = PatientKey.objects.filter(patient_id=patient_id).values_list("encryptions", flat=True)
    if used.get() >= GCM_NONCE_BUDGET // 2:
        rotate_patient_key(patient_id)


def _locked_private_keyring(patient_id: uuid.UUID | str) -> Keyring:
    """The patient's keyring, row locked, as a private copy to change and save.

    Never the cached keyring: the cache is keyed by the blob it came from, so changing that
    object in place and then rolling back (or failing before the save) would leave this process
    with a keyring the database does not hold: a rotation's new version, which the process would
    then encrypt with and nobody could decrypt after a restart, or a shred that makes the
    patient's data unreadable here although it was never erased.
    """
    row = PatientKey.objects.select_for_update().filter(patient_id=patient_id)
    wrapped = bytes(row.values_list("wrapped", flat=True).get())
    try:
        return unwrap_keyring(wrapped, master(), keyring_name(patient_id))
    except CryptoError:
        if not reload_master():
            raise
        return unwrap_keyring(wrapped, master(), keyring_name(patient_id))


def keyring_for(patient_id: uuid.UUID | str, suite: Suite) -> Keyring:
    """The patient's keyring, able to encrypt under ``suite`` (the policy's choice).

    The first write that wants a suite the keyring has no active version for adds one: under the
    row lock, on a private copy, re-checked after the lock (another process may have added it
    meanwhile), and saved before anything is encrypted with it, so no two processes ever add
    conflicting versions and nothing is sealed under a key the database does not hold.
    """
    ring = patient_keyring(patient_id)
    if ring.can_encrypt(suite):
        return ring
    with transaction.atomic():
        fresh = _locked_private_keyring(patient_id)
        if fresh.add_suite(suite) is not None:
            PatientKey.objects.filter(patient_id=patient_id).update(
                wrapped=wrap_keyring(fresh, master())
            )
    _forget_in_scope(patient_id)
    return patient_keyring(patient_id)


@transaction.atomic
def rotate_patient_key(patient_id: uuid.UUID | str, suite: Suite | None = None) -> int:
    """New primary version for the patient; old data stays readable (decrypt-only)."""
    ring = _locked_private_keyring(patient_id)
    version = ring.rotate(suite).version
    save_patient_keyring(ring, patient_id)
    return version


@transaction.atomic
def shred_patient(patient_id: uuid.UUID | str) -> None:
    """Crypto-shredding: destroy every version of the patient's data key."""
    ring = _locked_private_keyring(patient_id)
    ring.shred()
    _forget_in_scope(patient_id)
    PatientKey.objects.filter(patient_id=patient_id).update(wrapped=wrap_keyring(ring, master()))


# -- PHI fields -----------------------------------------------------------------------------------


def field_context(table: str, column: str, row: Any, patient_id: Any) -> BoundContext:
    return BoundContext(
        {"table": table, "column": column, "row": str(row), "patient": str(patient_id)}
    )


def seal(
    patient_id: Any, table: str, column: str, row: Any, value: str, *, suite: Suite | None = None
) -> bytes:
    """``value`` sealed under the patient's key; under ``suite`` when given (the policy's choice,
    see :mod:`carevault.web.vault.adaptive`), else under the keyring's primary."""
    context = field_context(table, column, row, patient_id)
    if suite is None:
        return patient_keyring(patient_id).encrypt(value.encode(), context)
    return keyring_for(patient_id, suite).encrypt(value.encode(), context, suite=suite)


def open_text(patient_id: Any, table: str, column: str, row: Any, sealed: bytes) -> str:
    ring = patient_keyring(patient_id)
    return ring.decrypt(bytes(sealed), field_context(table, column, row, patient_id)).decode()


class PhiRow:
    """The PHI fields of one row (table, row, patient), sealed and opened with the row's context
    encoded once (:meth:`carevault.crypto.Keyring.row`): what :func:`seal` and
    :func:`open_text` write and read, byte for byte, at a fraction of the cost per field.

    The patient's keyring is looked up on first use, once per suite, and never kept beyond the
    object: build one per write or read of a row, not one per model instance.
    """

    __slots__ = ("_ciphers", "_context", "patient_id")

    def __init__(self, patient_id: Any, table: str, row: Any) -> None:
        self.patient_id = patient_id
        self._context = {"table": table, "row": str(row), "patient": str(patient_id)}
        self._ciphers: dict[Suite | None, RowCipher] = {}

    def _cipher(self, suite: Suite | None) -> RowCipher:
        cipher = self._ciphers.get(suite)
        if cipher is None:
            if suite is None:
                ring = patient_keyring(self.patient_id)
            else:
                ring = keyring_for(self.patient_id, suite)
            cipher = self._ciphers[suite] = ring.row(self._context, suite=suite)
        return cipher

    def seal(self, column: str, value: str, *, suite: Suite | None = None) -> bytes:
        """``value`` sealed for ``column``, as :func:`seal` would."""
        return self._cipher(suite).seal(column, value.encode())

    def open_text(self, column: str, sealed: bytes | memoryview) -> str:
        """The text of ``column``, as :func:`open_text` would; DecryptionError otherwise."""
        return self._cipher(None).open(column, bytes(sealed)).decode()


# -- service secrets and blind indexes ------------------------------------------------------------


def service_secret(name: str) -> SecretBytes:
    """A 32-byte server secret, created once, wrapped in the database."""
    with _lock:
        cached = _secrets.get(name)
    if cached is not None:
        return cached
    context = {"purpose": "service-secret", "name": name}
    row = ServiceSecret.objects.filter(name=name).first()
    if row is None:
        with transaction.atomic():
            fresh = SecretBytes.random(32)
            row, _created = ServiceSecret.objects.get_or_create(
                name=name, defaults={"wrapped": master().wrap(fresh.expose(), context)}
            )
    secret = SecretBytes(unwrap_current(bytes(row.wrapped), context))
    with _lock:
        _secrets[name] = secret
    return secret


LOGIN_KEY_NAME = "login-key"


def login_key(*, reload: bool = False) -> LoginKey:
    """The server's P-256 key for encrypted login packets, created once, cached per process.

    Its PKCS#8 DER is a service secret like the others (a ``ServiceSecret`` row, wrapped by the
    master key with the same context), so ``carevault keys rotate`` rewraps it with the rest.
    ``reload=True`` reads the row again: a process that meets a challenge made under another
    key id (the key was replaced while it ran) picks up the current key instead of failing.
    """
    global _login_key
    with _lock:
        cached = _login_key
    if cached is not None and not reload:
        return cached
    context = {"purpose": "service-secret", "name": LOGIN_KEY_NAME}
    row = ServiceSecret.objects.filter(name=LOGIN_KEY_NAME).first()
    if row is None:
        with transaction.atomic():
            fresh = LoginKey.generate().private_bytes()
            row, _created = ServiceSecret.objects.get_or_create(
                name=LOGIN_KEY_NAME, defaults={"wrapped": master().wrap(fresh.expose(), context)}
            )
    key = LoginKey.from_private_bytes(SecretBytes(unwrap_current(bytes(row.wrapped), context)))
    with _lock:
        _login_key = key
    return key


def blind_index(field: str, value: str, *, bits: int = 32) -> str:
    return BlindIndex(service_secret("blind-index"), field, bits=bits).compute(value)


# -- clinicians' signing keys ---------------------------------------------------------------------


def signing_context(user_id: Any, key_id: str) -> dict[str, str]:
    return {"purpose": "signing-key", "user": str(user_id), "key": key_id}


def signing_key_for(user: Any) -> tuple[ClinicianKey, SigningKey]:
    """The user's active signing key, created (Ed25519) on first use."""
    record = ClinicianKey.objects.filter(user=user, active=True).order_by("-created_at").first()
    if record is None:
        key = SigningKey.generate(SignatureAlgorithm.ED25519)
        record = ClinicianKey.objects.create(
            user=user,
            algorithm=key.algorithm.value,
            key_id=key.key_id,
            public_key=key.verify_key.public_bytes(),
            wrapped_private=master().wrap(
                key.private_bytes().expose(), signing_context(user.pk, key.key_id)
            ),
        )
        return record, key
    private = unwrap_current(bytes(record.wrapped_private), signing_context(user.pk, record.key_id))
    return record, SigningKey.from_private_bytes(record.algorithm, SecretBytes(private))


def verify_key(record: ClinicianKey) -> VerifyKey:
    """The public half of a clinician's key record, once the record is shown to be genuine.

    The database is no trust anchor for public keys: whoever can write to it could file a key
    pair of their own under a doctor's name, or replace a doctor's public key, and sign what they
    like. A record is genuine when its private half, wrapped under the master key and bound to
    the user and key id, unwraps and matches the public half: only this server can make that.
    Any failure raises :class:`InvalidSignatureError`, so a damaged record reads as tampered
    rather than crashing the page that shows it.
    """
    cache_key = hashlib.sha256(
        canonical_bytes(
            [
                str(record.pk),
                str(record.user_id),
                record.algorithm,
                record.key_id,
                bytes(record.public_key).hex(),
                bytes(record.wrapped_private).hex(),
            ]
        )
    ).digest()
    with _lock:
        cached = _verify_keys.get(cache_key)
    if cached is not None:
        return cached
    try:
        private = unwrap_current(
            bytes(record.wrapped_private), signing_context(record.user_id, record.key_id)
        )
        public = SigningKey.from_private_bytes(record.algorithm, SecretBytes(private)).verify_key
    except CryptoError:
        raise InvalidSignatureError() from None
    if public.key_id != record.key_id or public.public_bytes() != bytes(record.public_key):
        raise InvalidSignatureError()
    with _lock:
        if len(_verify_keys) >= _KEYRING_CACHE:
            _verify_keys.clear()
        _verify_keys[cache_key] = public
    return public
