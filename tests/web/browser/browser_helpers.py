"""Helpers of the browser tests (the conftest's fixtures and the tests share them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from playwright.sync_api import ConsoleMessage, Page

# Debian's Chromium and its flags: one definition, shared with the clinic-day recorder.
from carevault.web.securitycore.clinic_day_recorder import CHROMIUM as CHROMIUM
from carevault.web.securitycore.clinic_day_recorder import CHROMIUM_ARGS as CHROMIUM_ARGS

DESKTOP = {"width": 1280, "height": 900}
TIMEOUT_MS = 10_000

# Chromium prints a CSP violation as a console error naming the Content Security Policy
# (Chromium 156: "Executing inline script violates the following Content Security Policy
# directive ..."; older versions: "Refused to execute ..."). The page also gets a
# ``securitypolicyviolation`` event, which the init script below turns into a console error, so
# a violation is caught even if the browser's wording changes again.
CSP_MARKERS = ("Content Security Policy", "Refused to ", "securitypolicyviolation")
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`securitypolicyviolation: ${e.violatedDirective} blocked ${e.blockedURI}`);
});
"""


@dataclass
class ConsoleLog:
    """Console messages of every page a test opened, with the page they came from."""

    messages: list[tuple[str, str, str]] = field(default_factory=list)  # (url, type, text)

    def watch(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            self.messages.append((page.url, message.type, message.text))

        page.on("console", on_console)
        page.on(
            "pageerror", lambda error: self.messages.append((page.url, "pageerror", str(error)))
        )

    def csp_violations(self) -> list[str]:
        return [
            f"{url}: {text}"
            for url, kind, text in self.messages
            if kind in ("error", "warning", "pageerror") and any(m in text for m in CSP_MARKERS)
        ]


# login_as(username, *, viewport=None, **context_options) -> a logged-in page
LoginAs = Callable[..., Page]
