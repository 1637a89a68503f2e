"""Who is on the other end: the client address, behind a known number of trusted proxies.

``CAREVAULT_TRUSTED_PROXIES`` says how many reverse proxies (load balancer, TLS terminator)
stand in front of the app. Each appends the address it saw to X-Forwarded-For, so the client is
the entry that many places from the *right*; everything to its left was written by the client
and is ignored (a spoofed header cannot choose the address an attacker is counted under).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    peer = str(request.META.get("REMOTE_ADDR", ""))
    hops = int(getattr(settings, "TRUSTED_PROXIES", 0))
    if hops <= 0:
        return _clean(peer)
    forwarded = [
        part.strip()
        for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
        if part.strip()
    ]
    if len(forwarded) < hops:
        # Fewer entries than proxies: the request did not come through them all; count the peer.
        return _clean(peer)
    return _clean(forwarded[-hops])


def _clean(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return "invalid"
