"""A small HTTP client of a running CareVault server, standard library only.

It logs in the way the browser does, with an encrypted login packet (crypto/packets.py): the
password never travels as a readable form post, and the server sees the same requests from this
client as from ``login.js``. Used by the tests against a live server and by the attack lab,
which also needs the raw steps: fetch a challenge, seal a packet, send a packet (again).

    client = CareVaultClient("https://clinic.example")
    client.login("doctor1", password)
    client.get_json("/api/v1/me")                   # {"username": "doctor1", "role": "doctor"}

``verify_tls=False`` accepts any certificate (``carevault serve --tls`` makes a self-signed
one); a pinned ``cafile`` is better.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from carevault.crypto.packets import Challenge, seal_login_packet

LOGIN_PAGE = "/accounts/login/"
CHALLENGE_PATH = "/accounts/login/challenge/"
PACKET_PATH = "/accounts/login/packet/"
CSRF_COOKIE = "csrftoken"


class LoginFailed(Exception):
    """The server refused the login. It says only "Login failed.", or, while sign-in is paused
    for the name or this address, that it is paused and when to try again (``retry_after``
    seconds; see login/views.py)."""

    def __init__(self, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class ReceivedChallenge:
    """A challenge and the moment (monotonic clock) it arrived, to stamp packets in server time."""

    challenge: Challenge
    received: float

    def server_now(self) -> float:
        return self.challenge.issued + (time.monotonic() - self.received)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers too (a 302 to the login page says "log in first")."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class CareVaultClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 15.0,
        verify_tls: bool = True,
        cafile: str | None = None,
        follow_redirects: bool = True,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.timeout = timeout
        self.cookies = CookieJar()
        context = ssl.create_default_context(cafile=cafile)
        if not verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.HTTPCookieProcessor(self.cookies),
            urllib.request.HTTPSHandler(context=context),
        ]
        if not follow_redirects:
            handlers.append(_NoRedirect())
        self._opener = urllib.request.build_opener(*handlers)

    # -- plain requests ---------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One request; every status comes back as a :class:`Response` (none raises)."""
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url(path), data=body, method=method, headers=headers or {}
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                return Response(answer.status, dict(answer.headers.items()), answer.read())
        except urllib.error.HTTPError as error:
            with error:
                return Response(error.code, dict(error.headers.items()), error.read())

    def get(self, path: str) -> Response:
        return self.request("GET", path, headers={"Accept": "application/json, text/html"})

    def get_json(self, path: str) -> Any:
        response = self.get(path)
        if not response.ok:
            raise RuntimeError(f"GET {path}: HTTP {response.status}")
        return response.json()

    def post_json(self, path: str, data: Any) -> Response:
        """POST a JSON body with the CSRF token (``X-CSRFToken``) and this site as the origin."""
        if self.csrf_token() is None:
            self.get(LOGIN_PAGE)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            # Django checks the origin of unsafe requests over HTTPS.
            "Origin": self.base_url,
            "Referer": self.base_url + "/",
            "X-CSRFToken": self.csrf_token() or "",
        }
        return self.request("POST", path, body=json.dumps(data).encode(), headers=headers)

    def csrf_token(self) -> str | None:
        for cookie in self.cookies:
            if cookie.name == CSRF_COOKIE:
                return cookie.value
        return None

    # -- logging in -------------------------------------------------------------------------------

    def challenge(self) -> ReceivedChallenge:
        response = self.get(CHALLENGE_PATH)
        if response.status != 200:
            raise RuntimeError(f"no login challenge: HTTP {response.status}")
        return ReceivedChallenge(Challenge.from_dict(response.json()), time.monotonic())

    def seal(self, username: str, password: str) -> dict[str, str]:
        """A fresh login packet (a new challenge each time), not sent: for sending later, twice,
        or changed, as the tests and the attack lab do."""
        received = self.challenge()
        return seal_login_packet(received.challenge, username, password, received.server_now())

    def send_packet(self, packet: dict[str, Any], *, next_url: str = "") -> Response:
        """Post a login packet as it is (a captured one is re-sent byte for byte)."""
        path = PACKET_PATH + (f"?{urlencode({'next': next_url})}" if next_url else "")
        return self.post_json(path, packet)

    def login(self, username: str, password: str, *, next_url: str = "") -> str:
        """Log in; return where the server leads next (home, or the second-factor page).

        Raises :class:`LoginFailed` for every refusal, with the server's words."""
        if self.csrf_token() is None:
            self.get(LOGIN_PAGE)
        response = self.send_packet(self.seal(username, password), next_url=next_url)
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status != 200 or not isinstance(answer, dict) or answer.get("ok") is not True:
            told = answer.get("error") if isinstance(answer, dict) else None
            wait = answer.get("retry_after") if isinstance(answer, dict) else None
            raise LoginFailed(
                str(told) if isinstance(told, str) and told else "login failed",
                wait if isinstance(wait, int) and response.status == 429 else 0,
            )
        return str(answer.get("next", "/"))

    def logout(self) -> Response:
        if self.csrf_token() is None:
            self.get(LOGIN_PAGE)
        headers = {
            "Origin": self.base_url,
            "Referer": self.base_url + "/",
            "X-CSRFToken": self.csrf_token() or "",
        }
        return self.request("POST", "/accounts/logout/", body=b"", headers=headers)
