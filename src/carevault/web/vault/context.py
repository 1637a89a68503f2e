"""What a write tells the adaptive encryption policy about itself: the explicit, frozen
:class:`WriteContext` every :meth:`PhiModel.seal <carevault.web.vault.phi.PhiModel.seal>` takes.

The action that writes builds it once (:func:`write_context`, from its acting user and the
:class:`~carevault.web.clientinfo.ClientInfo` of the client it serves) and hands it to every row
it seals, so the policy's inputs (role, session risk, host load) are visible in the call, and no
model method reads an ambient request.

The session's risk, the host's load and the system floor are the security layer's to know. The
vault does not import it (the security layer sits above the vault and writes through it):
the security layer registers a :class:`RiskSource` here at ``AppConfig.ready()``, the way audit
observers are registered. With none registered (a process without the security app) the safe
defaults apply: risk 0, an idle host, no raised floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from carevault.crypto import Suite
from carevault.security.policy import DataClass
from carevault.web.clientinfo import ClientInfo

# The policy's role for a write no signed-in person makes (a command, a job, the demo seed).
SYSTEM_ROLE = "system"


@dataclass(frozen=True)
class HostLoad:
    """How busy this server is: CPU use (0..100 %), request latency (p95, ms), requests per
    second. Zeros: idle, or not measured (a process that serves no requests)."""

    cpu_percent: float = 0.0
    latency_ms: float = 0.0
    traffic_rps: float = 0.0


IDLE = HostLoad()


@dataclass(frozen=True)
class WriteContext:
    """The inputs of one write that are not the data itself: who writes (the policy's role),
    how risky their session looks right now (0..1), how loaded the host is, and optionally the
    data class the writer knows the data to have (None: the record's own, from
    :meth:`~carevault.web.vault.phi.PhiModel.phi_data_class`; a named class can only raise the
    record's own, never lower it)."""

    role: str
    session_risk: float
    load: HostLoad
    data_class: DataClass | None = None


# A write made outside any session (a command, a background job, the demo seed, a test sealing a
# row directly): the system role, no session risk, an idle host. The raised system floor still
# applies: the policy asks for it at every decision, whatever the context.
SYSTEM_WRITE = WriteContext(role=SYSTEM_ROLE, session_risk=0.0, load=IDLE)


class Actor(Protocol):
    """Who writes, as far as the policy cares (an accounts ``User``; the vault sits below the
    accounts app and does not import it)."""

    @property
    def role(self) -> str: ...


class RiskSource(Protocol):
    """What the security layer knows about a write's circumstances."""

    def session_risk(self, session: str) -> float:
        """The risk of the session with this keyed hash (``ClientInfo.session``), 0..1."""
        ...

    def host_load(self) -> HostLoad:
        """This process's latest host sample (:data:`IDLE` before the first one)."""
        ...

    def system_floor(self) -> Suite | None:
        """The suite nothing may be sealed below right now, if the security layer raised one."""
        ...


class _NoRiskSource:
    """The safe defaults, in force until a security layer registers itself."""

    def session_risk(self, session: str) -> float:
        return 0.0

    def host_load(self) -> HostLoad:
        return IDLE

    def system_floor(self) -> Suite | None:
        return None


NO_RISK_SOURCE: RiskSource = _NoRiskSource()

_source: RiskSource = NO_RISK_SOURCE


def register_risk_source(source: RiskSource) -> None:
    """Make ``source`` the one every write context and decision asks (replacing any before it:
    there is one security layer per process)."""
    global _source
    _source = source


def risk_source() -> RiskSource:
    return _source


def write_context(
    acting_user: Actor | None, client: ClientInfo, data_class: DataClass | None = None
) -> WriteContext:
    """The context of a write ``acting_user`` makes for ``client``.

    The role and the risk are those of a session: a client with none (a command, a job, the
    demo seed: ``NO_CLIENT``) writes as the system with no session risk, whoever the action
    names as acting user, exactly as such writes always did. The host load is this process's,
    whoever writes. Build it once per action: looking the risk up is a query."""
    source = risk_source()
    load = source.host_load()
    if not client.session:
        return WriteContext(SYSTEM_ROLE, 0.0, load, data_class)
    role = str(acting_user.role or SYSTEM_ROLE) if acting_user is not None else SYSTEM_ROLE
    risk = min(1.0, max(0.0, float(source.session_risk(client.session))))
    return WriteContext(role, risk, load, data_class)
