"""Browser fixtures: Debian's Chromium, headless, driven by Playwright on the live service."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Service

# The README's screenshots are refreshed with RAGQ_SCREENSHOTS_DIR=docs/screenshots; other runs
# still take them, into a scratch folder, so that the tracked files change only on purpose.
SCREENSHOTS = Path(
    os.environ.get("RAGQ_SCREENSHOTS_DIR") or Path(tempfile.gettempdir()) / "ragq-screenshots"
)
# Playwright cannot download its own browsers here: it drives the system's Chromium.
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    """RAGQ_CHROMIUM, or the first Chromium found on this machine."""
    configured = os.environ.get("RAGQ_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() or shutil.which(configured) else None
    return next((path for path in CHROMIUM_PATHS if Path(path).exists()), None)


def _unavailable(reason: str) -> None:
    # CI installs Chromium (`make test` does, where it can): there, a missing browser fails.
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """A headless Chromium for the console tests. Closed after them: while Playwright's sync API
    is open, an event loop runs in the main thread, and later tests' asyncio.run would fail."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    path = chromium_path()
    if path is None:
        _unavailable("no Chromium: apt-get install chromium (make test does it as root)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, service: Service) -> Iterator[Any]:
    """A fresh browser tab (its own session storage) on the service; fails on page errors."""
    viewport = {"width": 1280, "height": 860}
    context = browser.new_context(base_url=service.base_url, viewport=viewport)
    context.set_default_timeout(30_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    # A refused request is logged as a console error too; only script and policy errors count.
    tab.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    yield tab
    context.close()
    assert not errors, errors


def sign_in(page: Any, key: str, view: str = "documents") -> None:
    """Open the console and sign in with the key; waits for the view's heading."""
    page.goto(f"/console/#/{view}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation", name="Console").wait_for()


def screenshot(page: Any, name: str, full_page: bool = True) -> None:
    """Save the page as NAME.png in the screenshots folder (docs/screenshots for the README)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)
