"""Browser fixtures: Debian's Chromium driven by Playwright against pytest-django's live server.

The database. The live server answers from another thread, so these tests cannot run inside
the rolled-back transaction the other web tests use: ``live_server`` makes every test here
transactional (pytest-django requests ``transactional_db`` for it), and a transactional test
*flushes* every table when it ends. That would take the session's demo seed (see
tests/web/conftest.py) away from whatever runs next. So:

* pytest-django already runs transactional tests after all the rolled-back ones, wherever they
  sit on the command line, so the cast is intact when the first browser test starts;
* ``cast`` re-seeds at the start of a browser test when an earlier one flushed it, so each test
  starts from the same clinic as every other web test;
* ``_restore_cast`` re-seeds once more when the module is done, so the seed is there for any
  test that comes later, whatever order a plugin or a future test puts them in.

Each re-seed first drops the vault's per-process key caches: they would otherwise still hold the
service secrets (audit chain, blind index) whose rows the flush deleted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    REPORT_VIOLATIONS,
    TIMEOUT_MS,
    ConsoleLog,
    LoginAs,
)
from playwright.sync_api import Browser, Page, sync_playwright

from carevault.web import demo
from carevault.web.vault import service


def _reseed(password: str) -> None:
    service.reset_caches()
    demo.seed(password)


@pytest.fixture(scope="module")
def _restore_cast(django_db_blocker: Any, cast_password: str) -> Iterator[None]:
    """Put the demo cast back once this module's tests (and their flushes) are done."""
    yield
    with django_db_blocker.unblock():
        if not demo.is_seeded():
            _reseed(cast_password)


@pytest.fixture(scope="module")
def browser(_restore_cast: None) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (Debian's chromium package)")
    with pytest.MonkeyPatch.context() as mp:
        # Playwright's sync API keeps an asyncio event loop running in this thread (on a
        # greenlet) while the browser is open, so Django's async-safety check would refuse
        # every ORM call made here, including pytest-django's own flush after each test and
        # the re-seed. Nothing of Django runs *on* that loop: it only carries messages to the
        # browser, and this thread uses its database connection one call at a time. The live
        # server answers in its own threads, with no event loop. So the check is switched off,
        # and only while the browser is open.
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        playwright = sync_playwright().start()
        try:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()
        finally:
            playwright.stop()


@pytest.fixture
def cast(transactional_db: None, cast_password: str) -> None:
    """The demo cast, as every web test sees it (re-seeded if an earlier browser test's flush
    removed it)."""
    if not demo.is_seeded():
        _reseed(cast_password)


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Outside the repository; CAREVAULT_SCREENSHOT_DIR keeps them somewhere known."""
    chosen = os.environ.get("CAREVAULT_SCREENSHOT_DIR")
    if chosen:
        path = Path(chosen)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def console() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture
def login_as(
    browser: Browser, live_server: Any, cast: None, console: ConsoleLog, cast_password: str
) -> Iterator[LoginAs]:
    """``login_as("doctor1")``: a fresh browser context, logged in through the real login form.

    Every page opened is watched; when the test ends, a CSP violation on any of them fails it."""
    contexts = []

    def login(username: str, *, viewport: dict[str, int] | None = None, **options: Any) -> Page:
        context = browser.new_context(
            base_url=live_server.url, viewport=viewport or DESKTOP, **options
        )
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(REPORT_VIOLATIONS)
        contexts.append(context)
        page = context.new_page()
        console.watch(page)
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(cast_password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        return page

    yield login
    for context in contexts:
        context.close()
    violations = console.csp_violations()
    assert not violations, "Content-Security-Policy violations:\n" + "\n".join(violations)
