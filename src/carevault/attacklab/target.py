"""Where the lab may aim, and the HTTP client it aims with.

Only loopback addresses unless the officer names the host they own (``--i-own-this-host``):
an attack tool that could be pointed at anyone's server by a typo is a weapon, not a test.

:class:`AttackClient` is the project's own client (carevault.client: encrypted login packets,
CSRF, cookies) with two additions: every request is counted against the scenario's bounds and
timed (to say after how many attack requests the AI layer answered), and each client speaks
from an address of its own. The lab's server trusts one proxy hop (``CAREVAULT_TRUSTED_PROXIES=1``,
as a hospital behind its load balancer does), and the client plays that proxy: it appends its
address as the last ``X-Forwarded-For`` hop, after anything the attacker forges. So one machine
can be many attackers and many honest ward computers, and a forged header is still only the
attacker's own words on the left of the real hop.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from carevault.client import CareVaultClient, Response


class TargetRefused(Exception):
    """The target is not a loopback address and the officer did not say they own it."""


def check_target(url: str, owned_host: str | None = None) -> str:
    """The base URL if the lab may attack it; raises :class:`TargetRefused` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    if owned_host is not None and host.lower() == owned_host.lower():
        return f"{parts.scheme}://{parts.netloc}"
    try:
        infos = socket.getaddrinfo(host, parts.port or 80, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise TargetRefused(f"cannot resolve {host!r}: {exc}") from None
    addresses = {str(info[4][0]) for info in infos}
    outside = sorted(a for a in addresses if not ipaddress.ip_address(a).is_loopback)
    if outside:
        raise TargetRefused(
            f"{host} resolves to {', '.join(outside)}, not a loopback address; the lab attacks "
            f"loopback only unless you pass --i-own-this-host {host}"
        )
    return f"{parts.scheme}://{parts.netloc}"


class AttackClient(CareVaultClient):
    """A client that speaks from ``address``, counted by ``on_request`` (which raises
    :class:`~carevault.attacklab.scenario.BoundReached` past the scenario's bounds)."""

    def __init__(
        self,
        base_url: str,
        *,
        address: str,
        on_request: Callable[[], None] | None = None,
        forged: Sequence[str] = (),
        user_agent: str = "carevault-attack-lab",
        timeout: float = 30.0,
        follow_redirects: bool = False,
    ) -> None:
        super().__init__(
            base_url, timeout=timeout, verify_tls=False, follow_redirects=follow_redirects
        )
        self.address = str(ipaddress.ip_address(address))
        self.forged = list(forged)
        self.user_agent = user_agent
        self._on_request = on_request
        self.sent = 0
        self.times: list[float] = []

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        if self._on_request is not None:
            self._on_request()
        merged = {"User-Agent": self.user_agent, **(headers or {})}
        forged = merged.pop("X-Forwarded-For", ", ".join(self.forged))
        merged["X-Forwarded-For"] = ", ".join(x for x in (forged, self.address) if x)
        self.sent += 1
        self.times.append(time.time())
        return super().request(method, path, body=body, headers=merged)

    def post_form(
        self, path: str, fields: dict[str, str], *, origin: str | None = None
    ) -> Response:
        """POST a form the way a browser does: urlencoded, with the CSRF token and this origin
        (``origin=""`` leaves the token and origin out, as a cross-site forger would)."""
        from urllib.parse import urlencode

        if self.csrf_token() is None:
            self.get("/accounts/login/")
        data = dict(fields)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if origin is None:
            data.setdefault("csrfmiddlewaretoken", self.csrf_token() or "")
            headers["Origin"] = self.base_url
            headers["Referer"] = self.base_url + "/"
        elif origin:
            headers["Origin"] = origin
            headers["Referer"] = origin + "/"
        return self.request("POST", path, body=urlencode(data).encode(), headers=headers)
