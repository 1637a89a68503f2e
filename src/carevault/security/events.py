"""Security events: one record per thing that happened (a login, a PHI read, an upload, a host
sample). The web layer and the traffic generator produce the same type, so detectors trained on
generated traffic score real traffic unchanged.

Fields are modelled on public risk-based-authentication data (address, network, client, time,
round-trip time, outcome) plus what a clinical system adds (records touched, uploads, keys).
No field holds PHI: actors and sessions are identifiers, never names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class EventKind(enum.StrEnum):
    LOGIN_SUCCESS = "login_success"
    LOGIN_FAILURE = "login_failure"
    PACKET_REJECTED = "packet_rejected"
    PHI_READ = "phi_read"
    PHI_WRITE = "phi_write"
    ACCESS_DENIED = "access_denied"
    UPLOAD = "upload"
    SIGNATURE_FAILURE = "signature_failure"
    DECRYPTION_FAILURE = "decryption_failure"
    PREDICTION = "prediction"
    KEY_OPERATION = "key_operation"
    HOST = "host"


class AttackClass(enum.StrEnum):
    """Ground truth of generated traffic (``BENIGN`` for normal use)."""

    BENIGN = "benign"
    BRUTE_FORCE = "brute_force"
    CREDENTIAL_STUFFING = "credential_stuffing"
    PASSWORD_SPRAYING = "password_spraying"  # noqa: S105 - an attack name, not a password
    LOW_AND_SLOW = "low_and_slow"
    SESSION_HIJACK = "session_hijack"
    RECORD_SCRAPING = "record_scraping"
    PRIVILEGE_PROBING = "privilege_probing"
    TAMPERED_UPLOAD = "tampered_upload"
    MALFORMED_UPLOAD = "malformed_upload"
    MODEL_EXTRACTION = "model_extraction"
    CPU_FLOOD = "cpu_flood"
    NETWORK_FLOOD = "network_flood"


@dataclass(frozen=True, slots=True)
class Event:
    at: float  # unix seconds
    kind: EventKind
    actor: str = ""  # username or account name tried ("" for host samples)
    role: str = ""  # patient / doctor / labtech / admin / "" when unknown
    address: str = ""  # client IP address
    network: str = ""  # the network the address belongs to (e.g. an ASN or /16)
    client: str = ""  # a client fingerprint (hash of the user agent)
    session: str = ""  # a session identifier (hash), "" before login
    rtt_ms: float = 0.0  # round-trip time seen for the request
    outcome: str = "ok"  # ok / failed / denied
    records: int = 0  # PHI records read or written by the request
    upload_bytes: int = 0
    declared_type: str = ""  # the upload's claimed content type
    sniffed_type: str = ""  # what its content is ("" if not recognised)
    suite_id: int = 0  # suite id found in an uploaded ciphertext header (0: none)
    key_bytes: int = 0  # key length found / claimed in uploaded key material (0: none)
    header_ok: bool = True  # whether an uploaded ciphertext header parsed
    stored_data: bool = False  # a decryption failure on data at rest (not on input)
    cpu: float = 0.0  # host CPU use, 0..1 (host samples)
    net_mbps: float = 0.0  # host network throughput (host samples)
    latency_ms: float = 0.0  # request latency (host samples: p95 over the sample)
    # Sign-in attempts refused from the address in the throttle's window, for an event that
    # summarizes a run of refusals (one event, not one per refused request); else 0.
    refused: int = 0
    label: AttackClass = AttackClass.BENIGN  # ground truth; always BENIGN for real traffic
    patients: tuple[str, ...] = field(default_factory=tuple)  # patient ids touched (responses)
