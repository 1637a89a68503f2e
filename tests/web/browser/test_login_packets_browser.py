"""In a real browser: the login form encrypts the credentials (login.js, WebCrypto) and no request
the page makes carries the password in the clear. Without JavaScript, nobody can log in."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from browser_helpers import REPORT_VIOLATIONS, TIMEOUT_MS, ConsoleLog
from django.core.cache import cache
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect

from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.login import challenges, throttle

pytestmark = pytest.mark.browser

PACKET_PATH = "/accounts/login/packet/"
CHALLENGE_PATH = "/accounts/login/challenge/"


def open_login_page(
    browser: Browser, live_server: Any, console: ConsoleLog, **options: Any
) -> tuple[BrowserContext, Page, list[Request]]:
    context = browser.new_context(base_url=live_server.url, **options)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    console.watch(page)
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    page.goto("/accounts/login/")
    return context, page, requests


def body_of(request: Request) -> bytes:
    return request.post_data_buffer or b""


def test_the_browser_logs_in_with_an_encrypted_packet_and_never_sends_the_password(
    browser, live_server, cast, console, cast_password
):
    context, page, requests = open_login_page(browser, live_server, console)
    page.get_by_label("Username").fill("doctor1")
    page.get_by_label("Password").fill(cast_password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    expect(page.get_by_role("heading", name="My patients")).to_be_visible()

    packet_posts = [r for r in requests if r.method == "POST" and PACKET_PATH in r.url]
    assert len(packet_posts) == 1
    packet = json.loads(body_of(packet_posts[0]))
    assert set(packet) == {"cid", "epk", "iv", "ct"}
    assert packet_posts[0].headers.get("x-csrftoken")
    assert any(r.method == "GET" and CHALLENGE_PATH in r.url for r in requests)

    secret = cast_password.encode()
    for request in requests:
        assert secret not in body_of(request), f"{request.method} {request.url} sent the password"
        assert cast_password not in request.url
        assert b"doctor1" not in body_of(request), "the username travels encrypted too"
    # The server opened the packet it got: the login is audited as an ordinary one.
    assert AuditEntry.objects.filter(action="auth.login", actor="doctor1").exists()
    assert not AuditEntry.objects.filter(action="auth.packet_rejected").exists()
    context.close()
    assert not console.csp_violations()


def test_a_wrong_password_shows_the_generic_error_in_the_page(
    browser, live_server, cast, console, cast_password
):
    context, page, _ = open_login_page(browser, live_server, console)
    page.get_by_label("Username").fill("doctor1")
    page.get_by_label("Password").fill("Not-The-Password-1")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Login failed.")
    assert "/accounts/login/" in page.url
    expect(page.get_by_label("Password")).to_have_value("")
    # The form works again at once: the right password now logs in.
    page.get_by_label("Password").fill(cast_password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    context.close()
    assert not console.csp_violations()


def test_a_paused_sign_in_shows_the_servers_words_and_when_to_try_again(
    browser, live_server, cast, console, cast_password
):
    """The live server runs in this process: blocking its client address here pauses the page's
    sign-in (issue 12); the page says so in the server's words, not "Login failed."."""
    throttle.block_address("127.0.0.1", "a test block", seconds=600)
    try:
        context, page, _ = open_login_page(browser, live_server, console)
        page.get_by_label("Username").fill("doctor1")
        page.get_by_label("Password").fill(cast_password)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text(
            "Sign-in is paused for this account name or this computer; try again in 10 minutes."
        )
        assert "/accounts/login/" in page.url
        context.close()
    finally:
        throttle.unblock_address("127.0.0.1", actor=None)
        cache.clear()
    assert not console.csp_violations()


def test_too_many_sign_ins_from_one_computer_says_so_and_for_how_long(
    browser, live_server, cast, console, cast_password, settings, monkeypatch
):
    """The challenge endpoint's per-address rate (issue 12) is a rate, not a block: the page says
    what happened and how long to wait, in the server's words. (The live server runs in this
    process: its clock stands still, so both attempts fall in one minute.)"""
    settings.LOGIN_CHALLENGES_PER_MINUTE = 1
    standing = float(int(time.time()))
    monkeypatch.setattr(challenges, "now", lambda: standing)
    try:
        context, page, _ = open_login_page(browser, live_server, console)
        for _ in range(2):
            page.get_by_label("Username").fill("doctor1")
            page.get_by_label("Password").fill("Not-The-Password-1")
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("alert")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text(
            "Too many sign-ins from this computer this minute; try again in"
        )
        context.close()
    finally:
        cache.clear()
    assert not console.csp_violations()


def test_a_password_beyond_ascii_survives_the_browsers_encryption(
    browser, live_server, cast, console
):
    """WebCrypto and TextEncoder in the page, pyca/cryptography and json on the server: the
    same bytes on both sides, whatever the characters."""
    password = 'Zürich-Ünïcødé-密码-🔑 "quoted" \\ tab\there'
    user = User.objects.get(username="doctor2")
    user.set_password(password)
    user.save(update_fields=["password"])
    context, page, requests = open_login_page(browser, live_server, console)
    page.get_by_label("Username").fill("doctor2")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    for request in requests:
        assert password.encode() not in body_of(request)
    context.close()


def test_without_javascript_the_page_explains_and_nothing_can_be_submitted(
    browser, live_server, cast, console
):
    context, page, requests = open_login_page(
        browser, live_server, console, java_script_enabled=False
    )
    # Playwright turns scripts off by emulation, which leaves the parser treating <noscript> as
    # raw text; what a browser with JavaScript switched off would show is in it.
    assert "JavaScript is required to log in securely" in page.locator("noscript").inner_html()
    expect(page.get_by_label("Username")).to_be_disabled()
    expect(page.get_by_label("Password")).to_be_disabled()
    expect(page.get_by_role("button", name="Log in")).to_be_disabled()
    assert not [r for r in requests if r.method == "POST"]
    context.close()
