"""CareVault's crypto core: framework-free, built only on pyca/cryptography (and pycryptodome
for Shamir). Import from here; ``_primitives`` is the only module that touches hazmat.
"""

from .blind_index import BlindIndex, normalize_text
from .canonical import BoundContext, Context, RowContext, canonical_bytes
from .envelope import Header, parse_header
from .errors import (
    ConfigurationError,
    CryptoError,
    DecryptionError,
    EncodingError,
    InvalidSignatureError,
    KeyProviderError,
    KeyStateError,
    NonceBudgetExhaustedError,
    ShareError,
    UnknownSuiteError,
    WeakKeyError,
)
from .kek import (
    KeyEncryptionKey,
    KmsClient,
    KmsKey,
    MasterKey,
    RewrapReport,
    WrappedKeyStore,
    rewrap,
    rewrap_all,
    unwrap_keyring,
    wrap_keyring,
)
from .keyring import KeyInfo, Keyring, KeyState, RowCipher
from .providers import EnvMasterKeyProvider, FileMasterKeyProvider, KmsMasterKeyProvider
from .secret import SecretBytes
from .shamir import Share, recover_secret, split_secret
from .signing import Signature, SignatureAlgorithm, SigningKey, VerifyKey
from .streaming import decrypt_file, decrypt_stream, encrypt_file, encrypt_stream, iter_decrypt
from .suites import Suite, SuiteKind

__all__ = [
    "BlindIndex",
    "BoundContext",
    "ConfigurationError",
    "Context",
    "CryptoError",
    "DecryptionError",
    "EncodingError",
    "EnvMasterKeyProvider",
    "FileMasterKeyProvider",
    "Header",
    "InvalidSignatureError",
    "KeyEncryptionKey",
    "KeyInfo",
    "KeyProviderError",
    "KeyState",
    "KeyStateError",
    "Keyring",
    "KmsClient",
    "KmsKey",
    "KmsMasterKeyProvider",
    "MasterKey",
    "NonceBudgetExhaustedError",
    "RewrapReport",
    "RowCipher",
    "RowContext",
    "SecretBytes",
    "Share",
    "ShareError",
    "Signature",
    "SignatureAlgorithm",
    "SigningKey",
    "Suite",
    "SuiteKind",
    "UnknownSuiteError",
    "VerifyKey",
    "WeakKeyError",
    "WrappedKeyStore",
    "canonical_bytes",
    "decrypt_file",
    "decrypt_stream",
    "encrypt_file",
    "encrypt_stream",
    "iter_decrypt",
    "normalize_text",
    "parse_header",
    "recover_secret",
    "rewrap",
    "rewrap_all",
    "split_secret",
    "unwrap_keyring",
    "wrap_keyring",
]
