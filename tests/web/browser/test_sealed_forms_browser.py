"""In a real browser: the registration form (and the officer's new-user form) seal the password
(sealed-form.js, WebCrypto) and no request the page makes carries it readable. Without
JavaScript, the page says JavaScript is needed and no password can be sent."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest
from browser_helpers import REPORT_VIOLATIONS, TIMEOUT_MS, ConsoleLog
from django.core.cache import caches
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect

from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry

pytestmark = pytest.mark.browser

PASSWORD = "Sturdy-Lantern-Orbit-42"
REGISTER = "/accounts/register/"


@pytest.fixture(autouse=True)
def _fresh_allowance() -> None:
    caches["default"].clear()


def open_page(
    browser: Browser, live_server: Any, console: ConsoleLog, path: str, **options: Any
) -> tuple[BrowserContext, Page, list[Request]]:
    context = browser.new_context(base_url=live_server.url, **options)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    console.watch(page)
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    page.goto(path)
    return context, page, requests


def fill_registration(page: Page, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Full name").fill("Robin Browser")
    page.get_by_label("Date of birth").fill("1979-11-03")


def test_registration_in_the_browser_never_sends_the_password_readable(
    browser, live_server, cast, console
):
    context, page, requests = open_page(browser, live_server, console, REGISTER)
    fill_registration(page, "robinb")
    page.get_by_role("button", name="Create my account").click()
    page.wait_for_url(lambda url: REGISTER not in url)
    expect(page.get_by_role("status")).to_contain_text("Your username is robinb")

    posts = [r for r in requests if r.method == "POST" and REGISTER in r.url]
    assert len(posts) == 1
    body = posts[0].post_data or ""
    assert "sealed_packet=" in body
    assert PASSWORD not in body
    assert "password=" not in body
    for request in requests:
        assert PASSWORD.encode() not in (request.post_data_buffer or b""), request.url
        assert PASSWORD not in request.url
    assert User.objects.get(username="robinb").check_password(PASSWORD)
    assert not AuditEntry.objects.filter(action="auth.packet_rejected").exists()
    context.close()
    assert not console.csp_violations()


def test_a_taken_name_in_the_browser_gets_a_variant_shown_after_registration(
    browser, live_server, cast, console
):
    context, page, _ = open_page(browser, live_server, console, REGISTER)
    fill_registration(page, "patient1")
    page.get_by_role("button", name="Create my account").click()
    page.wait_for_url(lambda url: REGISTER not in url)
    expect(page.get_by_role("status")).to_contain_text("Your username is patient1-")
    context.close()


def test_without_javascript_the_page_says_it_is_needed_and_cannot_send_a_password(
    browser, live_server, cast, console
):
    context, page, _ = open_page(browser, live_server, console, REGISTER, java_script_enabled=False)
    # Playwright turns scripts off by emulation, which leaves the parser treating <noscript> as
    # raw text; what a browser with JavaScript switched off would show is in it.
    assert "JavaScript is required for this form" in page.locator("noscript").inner_html()
    expect(page.get_by_role("button", name="Create my account")).to_be_disabled()
    field = page.get_by_label("Password")
    assert field.get_attribute("name") is None
    context.close()


def test_the_officer_creates_a_user_with_a_sealed_password(login_as):
    page = login_as("admin")
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    page.goto("/security/users/new/")
    page.get_by_label("Username").fill("doctor9")
    page.get_by_label("Display name").fill("Dr Nine")
    page.get_by_label("Role").select_option("doctor")
    page.get_by_label("Initial password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("status")).to_contain_text("Account doctor9 created")
    posts = [r for r in requests if r.method == "POST"]
    assert posts
    assert all(PASSWORD.encode() not in (r.post_data_buffer or b"") for r in posts)
    packet = json.loads(parse_qs(posts[0].post_data or "")["sealed_packet"][0])
    assert set(packet) == {"cid", "epk", "iv", "ct"}
    assert User.objects.get(username="doctor9").check_password(PASSWORD)
