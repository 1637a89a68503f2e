"""Posting a sealed form from Python, as sealed-form.js does in the browser.

``sealed_post(client, url, data)`` takes the form's fields with the passwords in them, fetches a
challenge, seals the password fields into a form packet for the form's purpose and path, and
posts the rest with the packet in ``sealed_packet``: no readable password in the request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.http import HttpResponse
from django.test import Client
from django.urls import resolve, reverse

from carevault.crypto import packets
from carevault.web.login.sealed_forms import PACKET_FIELD, purpose_for_url_name

# The fields each sealed form seals, by purpose.
SEALED_FIELDS = {
    "register": ("password",),
    "totp-enrol": ("password",),
    "password-reset": ("password1", "password2"),
    "staff-user": ("password",),
}


def purpose_of(url: str) -> str:
    match = resolve(url.split("?", 1)[0])
    purpose = purpose_for_url_name(match.view_name)
    assert purpose is not None, f"{url} is not a sealed form"
    return str(purpose)


def seal_form(
    client: Client, url: str, data: Mapping[str, Any], *, purpose: str | None = None
) -> dict[str, Any]:
    """``data`` as the browser posts it: password fields sealed into the packet."""
    purpose = purpose or purpose_of(url)
    names = SEALED_FIELDS[purpose]
    challenge = client.get(reverse("accounts:login_challenge")).json()
    fields = {name: str(data[name]) for name in names if name in data}
    packet = packets.seal_form_packet(
        challenge, purpose, url.split("?", 1)[0], fields, challenge["issued"]
    )
    plain = {k: v for k, v in data.items() if k not in names}
    return plain | {PACKET_FIELD: json.dumps(packet)}


def sealed_post(
    client: Client,
    url: str,
    data: Mapping[str, Any],
    *,
    purpose: str | None = None,
    **extra: Any,
) -> HttpResponse:
    """POST ``data`` to the sealed form at ``url``, passwords sealed (see module doc)."""
    return client.post(url, seal_form(client, url, data, purpose=purpose), **extra)
