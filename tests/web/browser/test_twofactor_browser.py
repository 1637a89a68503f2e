"""In a real browser, under the strict Content-Security-Policy: TOTP enrolment with the QR code,
then a login through the encrypted login packet and the second step."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from carevault.crypto import otp
from carevault.web.login import sessions

pytestmark = pytest.mark.browser


class Clock:
    """The second-factor clock (the live server runs in this process), one TOTP step at a time."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) // 30 * 30 + 1)

    def __call__(self) -> float:
        return self.now


def test_a_patient_enrols_in_the_browser_and_logs_in_with_a_code(
    login_as, cast_password, monkeypatch
):
    clock = Clock()
    monkeypatch.setattr(sessions, "now", clock)
    page = login_as("patient1")
    page.get_by_role("link", name="Account security").click()
    page.get_by_role("link", name="Set up two-factor authentication").click()
    expect(page.locator("svg.totp-qr")).to_be_visible()
    secret = otp.secret_from_base32(page.get_by_test_id("totp-secret").inner_text())
    page.get_by_label("Code from your app").fill(otp.totp_code(secret, clock.now))
    page.get_by_label("Your password").fill(cast_password)
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_test_id("recovery-codes").locator("li")).to_have_count(10)

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")
    page.get_by_label("Username").fill("patient1")
    page.get_by_label("Password").fill(cast_password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/accounts/security/verify/**")
    clock.now += 30  # the enrolment used this step's code: the login needs the next one
    page.get_by_label("Code").fill(otp.totp_code(secret, clock.now))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(lambda url: "/accounts/security/verify/" not in url)
    expect(page.get_by_role("link", name="Account security")).to_be_visible()
