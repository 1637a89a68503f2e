"""From an audit entry (and the client it was written for) to a security
:class:`~carevault.security.events.Event`.

Every audited action passes through :func:`carevault.web.audit.log.record`, so that is where the
security layer listens (see scoring.py). This module decides which actions are events, of which
kind, and fills the event's fields from the entry, its client and the request being served (a
:class:`~.context.Serving`, when there is one). Actions that are the security
layer's own (responses, blocks, suspensions, officer decisions) and account administration are
not events: they are what the layer does, not what it watches.

Identifiers only: the session is a keyed hash of its key, the client a hash of its User-Agent, a
failed login naming no account is kept as a keyed hash of the name (people type passwords into
the name field), patients are their random record ids.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any

from carevault.security.events import Event, EventKind
from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.clientinfo import NO_CLIENT, ClientInfo
from carevault.web.login import sessions

from .context import Serving

# Audit action -> event kind. Prefix rules follow (WRITE_PREFIXES).
ACTION_KINDS: dict[str, EventKind] = {
    "auth.login": EventKind.LOGIN_SUCCESS,
    "auth.login_failed": EventKind.LOGIN_FAILURE,
    "auth.second_factor_failed": EventKind.LOGIN_FAILURE,
    "auth.totp_replay": EventKind.LOGIN_FAILURE,
    # Refused before (or regardless of) a password check: outcome "denied".
    "auth.throttled": EventKind.LOGIN_FAILURE,
    "auth.login_refused": EventKind.LOGIN_FAILURE,
    "auth.packet_rejected": EventKind.PACKET_REJECTED,
    # The throttle's summary of a run of attempts refused while paused (one per address and
    # window, at the run's length; throttle.count_refused): the run is the evidence.
    "auth.refused_run": EventKind.LOGIN_FAILURE,
    "access.denied": EventKind.ACCESS_DENIED,
    "session.refused": EventKind.ACCESS_DENIED,
    "phi.read": EventKind.PHI_READ,
    "phi.list": EventKind.PHI_READ,
    "phi.file_read": EventKind.PHI_READ,
    "patient.search": EventKind.PHI_READ,
    "breakglass.review": EventKind.PHI_READ,
    "phi.decryption_failed": EventKind.DECRYPTION_FAILURE,
    "phi.signature_failed": EventKind.SIGNATURE_FAILURE,
    # A sealed diagnosis model refused (tampered, rolled back, unsigned): stored data that fails
    # its check, whoever's request found it.
    "model.refused": EventKind.SIGNATURE_FAILURE,
    "lab.result": EventKind.PHI_WRITE,
    "keys.master_rotate": EventKind.KEY_OPERATION,
}
WRITE_PREFIXES = (
    "patient.create",
    "diagnosis.",
    "note.",
    "prescription.",
    "appointment.",
    "lab.request",
    "care.",
    "breakglass.open",
    "breakglass.revoke",
    "account.register",
)
PREDICTION_PREFIXES = ("prediction.", "model.predict")
KEY_PREFIXES = ("keys.",)

# Written by the security layer itself: never events (and never a loop).
OWN_PREFIXES = ("security.",)
# Sessions that timed out (idle, maximum length) are housekeeping, not a denial of anything.
BENIGN_REFUSALS = frozenset({sessions.IDLE, sessions.EXPIRED})


@dataclass(frozen=True)
class Observed:
    """An event with what the web layer needs to act on it."""

    event: Event
    entry_seq: int
    user: User | None  # the account the event names, if it exists
    serving: Serving | None  # the request being served, when it is this event's
    live: bool  # the request's logged-in session is the event's and can be acted on now
    action: str = ""  # the audit action the event stands for ("" when it is no audit entry)


def kind_of(entry: AuditEntry) -> EventKind | None:
    action = entry.action
    if action.startswith(OWN_PREFIXES):
        return None
    if action == "session.refused" and _details(entry).get("reason") in BENIGN_REFUSALS:
        return None
    if action == "phi.file_read" and _details(entry).get("error") == "integrity":
        return EventKind.DECRYPTION_FAILURE
    if action == "lab.result" and int(_details(entry).get("files") or 0) > 0:
        return EventKind.UPLOAD
    if action == "lab.upload_rejected":
        return EventKind.UPLOAD
    kind = ACTION_KINDS.get(action)
    if kind is not None:
        return kind
    if action.startswith(WRITE_PREFIXES):
        return EventKind.PHI_WRITE
    if action.startswith(PREDICTION_PREFIXES):
        return EventKind.PREDICTION
    if action.startswith(KEY_PREFIXES):
        return EventKind.KEY_OPERATION
    return None


def observe_entry(
    entry: AuditEntry,
    client: ClientInfo | None,
    *,
    serving: Serving | None = None,
    now: float | None = None,
) -> Observed | None:
    """The event an audit entry stands for, or None when the action is not one. ``client`` is
    the one the entry was written for (None: written without one, so the request being
    served's); ``serving`` the request being served, if any."""
    kind = kind_of(entry)
    if kind is None:
        return None
    details = _details(entry)
    user = serving.user() if serving is not None else None
    # The client now, when a request is being served: a login changes its session as it goes.
    live_client = serving.client() if serving is not None else None
    client = client if client is not None else (live_client or NO_CLIENT)
    if kind is EventKind.LOGIN_FAILURE and entry.action in ("auth.login_failed", "auth.throttled"):
        # The entry names the account tried (its target, when it exists), not a logged-in actor;
        # an attempted name that is no account is known only by its keyed hash.
        account = _account_targeted(entry)
        actor = account.username if account is not None else _unknown_actor(details)
        role = _role(account)
    elif entry.actor_id is not None:
        if user is not None and user.pk == entry.actor_id:
            account = user
        else:
            account = User.objects.filter(pk=entry.actor_id).first()
        actor, role = entry.actor, entry.role
    elif user is not None:
        # Written without an actor inside a request (e.g. a stored value found tampered while
        # a page was being built): the user of that request.
        account, actor, role = user, user.username, user.role
    else:
        account, actor, role = None, "", ""
    address = entry.address or client.address or (live_client.address if live_client else "")
    patients = _patients(entry, details)
    stored = kind in (EventKind.DECRYPTION_FAILURE, EventKind.SIGNATURE_FAILURE)
    session = live_client.session if live_client is not None and user is not None else ""
    event = Event(
        at=time.time() if now is None else now,
        kind=kind,
        actor=actor,
        role=role,
        address=address,
        network=network_of(address),
        client=client.agent_hash or (live_client.agent_hash if live_client else ""),
        session=session,
        rtt_ms=0.0,
        outcome=_outcome(kind, entry.outcome),
        records=_records(entry, details, patients),
        stored_data=stored,
        latency_ms=client.elapsed_ms() or (live_client.elapsed_ms() if live_client else 0.0),
        patients=patients,
        refused=_refused(entry, details),
        **(_upload_facts(details) if kind is EventKind.UPLOAD else {}),
    )
    live = bool(
        serving is not None
        and session
        and user is not None
        and account is not None
        and user.pk == account.pk
        and not stored
    )
    return Observed(event, entry.seq, account, serving if live else None, live, entry.action)


def _upload_facts(details: dict[str, Any]) -> dict[str, Any]:
    """Size and types of an upload, accepted (``lab.result``) or refused
    (``lab.upload_rejected``): what the detectors compare a file's claim and content with."""
    try:
        size = max(0, int(details.get("bytes") or 0))
    except (TypeError, ValueError):
        size = 0
    types = details.get("types")
    if isinstance(types, list) and types:
        # Accepted files: what was declared is what the content is.
        declared = sniffed = str(types[0])
    else:
        declared = str(details.get("declared_type") or "")
        sniffed = str(details.get("sniffed_type") or "")
    return {"upload_bytes": size, "declared_type": declared[:100], "sniffed_type": sniffed[:100]}


def _refused(entry: AuditEntry, details: dict[str, Any]) -> int:
    if entry.action != "auth.refused_run":
        return 0
    try:
        return max(0, int(details.get("refused") or 0))
    except (TypeError, ValueError):
        return 0


def _details(entry: AuditEntry) -> dict[str, Any]:
    return entry.details if isinstance(entry.details, dict) else {}


def _account_targeted(entry: AuditEntry) -> User | None:
    if entry.target_type != User._meta.label_lower or not entry.target_id.isdigit():
        return None
    return User.objects.filter(pk=int(entry.target_id)).first()


def _unknown_actor(details: dict[str, Any]) -> str:
    digest = str(details.get("username_hash", ""))
    return f"?{digest[:16]}" if digest else ""


def _role(account: User | None) -> str:
    return account.role if account is not None else ""


def network_of(address: str) -> str:
    """The /16 (IPv4) or /48 (IPv6) the address belongs to ("" if it is not one)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    prefix = 16 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _outcome(kind: EventKind, outcome: str) -> str:
    if kind is EventKind.ACCESS_DENIED:
        return "denied"
    if outcome in ("failed", "denied"):
        return outcome
    return "ok"


def _patients(entry: AuditEntry, details: dict[str, Any]) -> tuple[str, ...]:
    listed = details.get("patients")
    if isinstance(listed, list) and listed:
        return tuple(sorted({str(p) for p in listed}))
    return (str(entry.patient_id),) if entry.patient_id else ()


def _records(entry: AuditEntry, details: dict[str, Any], patients: tuple[str, ...]) -> int:
    if entry.action == "patient.search":
        return int(details.get("matches") or 0)
    if entry.action == "phi.list":
        return len(patients)
    return 1 if patients else 0
