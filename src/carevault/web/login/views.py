"""Logging in with an encrypted login packet (issue 4; the scheme is in crypto/packets.py).

=========================  ======  =========================================================
URL name                   method  does
=========================  ======  =========================================================
accounts:login             GET     the login page (POST is refused: no credentials in forms)
accounts:login_challenge   GET     a fresh single-use challenge (JSON)
accounts:login_packet      POST    a sealed packet (JSON, CSRF token in ``X-CSRFToken``) ->
                                   ``{"ok": true, "next": url}``; for a failure
                                   400 ``{"ok": false, "error": "Login failed."}``; while
                                   sign-in is paused 429 ``{"ok": false, "error": "Sign-in
                                   is paused ...", "retry_after": seconds}`` + Retry-After
=========================  ======  =========================================================

Every failure gets the same status and body, whatever the cause: a malformed, tampered,
replayed, expired or foreign packet, a wrong password, an unknown account. A paused sign-in
(the name's back-off or suspension, the address's block) gets the paused answer, decided before
any password check and worded the same for every name, so it tells neither whether the account
exists nor whether the password was right (flow.py).

A refused packet is audited with its reason (``auth.packet_rejected``) and counted towards the
address's forged-packet limit; from a blocked address it is only counted (one summary row per
window, throttle.count_refused), so junk sent at a blocked address cannot fill the audit log.
A challenge refused by the per-address rate is counted the same way.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST, require_safe

from carevault.crypto import DecryptionError
from carevault.crypto.errors import RejectedPacketError
from carevault.crypto.packets import MAX_PACKET_BYTES, LoginPacket, open_login_packet
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo
from carevault.web.vault import service

from . import challenges, flow, throttle
from .flow import LoginOutcome

LOGIN_FAILED = "Login failed."


def _json(data: dict[str, object], status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status)
    # Challenges and login answers are for one client, once: never kept by a cache.
    response["Cache-Control"] = "no-store"
    return response


@require_safe
@ensure_csrf_cookie
def login_page(request: HttpRequest) -> HttpResponse:
    """The login form. Its fields have no ``name``, so even a form submitted without JavaScript
    carries no credentials; and a POST here is refused (405) whatever it carries."""
    return render(request, "login/login.html", {"next": request.GET.get("next", "")})


@require_GET
def login_challenge(request: HttpRequest) -> HttpResponse:
    client = ClientInfo.from_request(request)
    try:
        challenges.check_rate(client.address)
    except challenges.TooManyChallenges as exc:
        # Counted with the address's other refused sign-ins (one counter; a summary row per
        # window, and one for a run no person makes: the security layer's event).
        throttle.count_refused(client.address, "challenge rate", client=client)
        # A rate, not a block: it ends with the minute, and says so (a whole clinic behind one
        # NAT address may meet it at a shift change; the next minute is a new window).
        seconds = max(1, int(exc.retry_after))
        response = _json(
            {
                "ok": False,
                "error": (
                    "Too many sign-ins from this computer this minute; "
                    f"try again in {seconds} seconds."
                ),
                "retry_after": seconds,
            },
            status=429,
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    return _json(challenges.issue().to_dict())


@require_POST
def login_packet(request: HttpRequest) -> HttpResponse:
    try:
        packet = LoginPacket.parse(_body(request))
    except DecryptionError:
        return _refused(request, "malformed")
    try:
        pending = challenges.consume(packet.cid)
    except challenges.ChallengeRefused as exc:
        return _refused(request, exc.reason)
    key = service.login_key()
    if key.key_id != pending.key_id:
        # The challenge was made under another key: this process holds an old one.
        key = service.login_key(reload=True)
    try:
        credentials = open_login_packet(
            key,
            packet,
            pending.nonce,
            pending.cid,
            expires=pending.expires,
            now=challenges.now(),
        )
    except DecryptionError:
        return _refused(request, "tampered")
    except RejectedPacketError as exc:
        return _refused(request, exc.reason)
    result = flow.attempt_password_login(request, credentials.username, credentials.password)
    if result.outcome is LoginOutcome.SUCCESS:
        home = resolve_url(settings.LOGIN_REDIRECT_URL)
        return _json({"ok": True, "next": _next_url(request) or home})
    if result.outcome is LoginOutcome.SECOND_FACTOR:
        return _json({"ok": True, "next": _second_factor_url(request)})
    if result.outcome is LoginOutcome.PAUSED:
        return _paused(result.retry_after)
    return _failed()


def _body(request: HttpRequest) -> bytes:
    """The raw body, or b"" (malformed) when it is larger than any packet can be."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return b""
    if declared > MAX_PACKET_BYTES:
        return b""
    try:
        return request.body
    except RequestDataTooBig:
        return b""


def _failed() -> JsonResponse:
    return _json({"ok": False, "error": LOGIN_FAILED}, status=400)


def _paused(retry_after: int) -> JsonResponse:
    seconds = max(1, int(retry_after))
    response = _json(
        {"ok": False, "error": flow.paused_message(seconds), "retry_after": seconds},
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response


def _refused(request: HttpRequest, reason: str) -> JsonResponse:
    client = ClientInfo.from_request(request)
    address = client.address
    decision = throttle.address_decision(address)
    if decision.blocked:
        # Counted, not audited one row each (nor turned into a security event each).
        throttle.count_refused(address, f"packet {reason}", client=client)
        return _paused(decision.retry_after)
    record(
        "auth.packet_rejected",
        outcome=Outcome.FAILED,
        client=ClientInfo.from_request(request),
        details={"reason": reason},
    )
    throttle.record_forged_packet(address, reason, client=client)
    return _failed()


def _next_url(request: HttpRequest) -> str:
    """Where the login page was asked to lead (``?next=``), if that is a page of this site."""
    target = request.GET.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


def _second_factor_url(request: HttpRequest) -> str:
    """The second-factor page (security_views.verify), passing ``next`` on: the password step is
    remembered in the session (factor_state.begin), and no session starts before the code."""
    url = reverse("account_security:verify")
    target = _next_url(request)
    return f"{url}?{urlencode({'next': target})}" if target else url
