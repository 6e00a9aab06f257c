"""Browser tests: the demo page and clients/web/mentorassist.js in a real headless Chromium.

Playwright for Python drives Debian's `chromium` package through `executable_path` (Playwright's
own browser downloads are never used). Without a Chromium the tests are skipped on a developer's
machine and fail in CI (`CI=true`), where `.ci/run` installs it. The local stack is the one the
end-to-end tests start (`python -m local up` in a subprocess), so the page talks to the real
gateway, authorizer and handlers.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from tests.e2e.conftest import LocalStack, _start

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ENV = "CHROMIUM"  # another Chromium binary, e.g. on a developer's laptop
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Playwright's default is 30 s per wait; the local stack answers in milliseconds.
WAIT_MS = 15_000

_screenshots: list[Path] = []


def chromium_path() -> str | None:
    candidate = os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
    if Path(candidate).is_file() and os.access(candidate, os.X_OK):
        return candidate
    return shutil.which("chromium")


# Package scope, not session: between its calls Playwright's sync API marks its event loop as
# the thread's running loop, so while it is alive no other test can run an asyncio loop (the
# end-to-end tests do). It stops when the last browser test is done.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:
        where = os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
        reason = (
            f"no Chromium at {where} or on PATH (set {CHROMIUM_ENV}, or install Debian's "
            "`chromium` package as .ci/run does)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the browser tests: {reason}", pytrace=False)
        pytest.skip(reason)
    browser = playwright.chromium.launch(
        executable_path=executable, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (no shared storage) and its page; console output is kept."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(_console_line(message)))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    request.node.browser_console = console
    yield page
    context.close()


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from _start(tmp_path_factory)


@pytest.fixture
def user() -> Callable[[str], str]:
    """Unique user ids per test, so tests never see each other's connections."""
    suffix = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{suffix}"


@pytest.fixture
def screenshot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """Save what the page shows now under test-artifacts/browser/ and return the path."""

    def take(label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{request.node.name}-{label}")
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        _screenshots.append(path)
        print(f"screenshot: {path}")
        return path

    return take


def _console_line(message: ConsoleMessage) -> str:
    return f"{message.type}: {message.text}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    console = getattr(item, "browser_console", None)
    if console:
        report.sections.append(("browser console", "\n".join(console[-200:])))
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    page = funcargs.get("page")
    if isinstance(page, Page) and not page.is_closed() and call.when == "call":
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', item.name)}-failed.png"
        try:
            page.screenshot(path=str(path), full_page=True)
            report.sections.append(("browser screenshot", str(path)))
        except Exception as error:  # the page may be what failed
            report.sections.append(("browser screenshot", f"not taken: {error}"))
    for value in funcargs.values():
        if isinstance(value, LocalStack):
            report.sections.append(("local stack log", "\n".join(value.lines[-200:])))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _screenshots:
        terminalreporter.write_sep("-", "browser screenshots")
        for path in _screenshots:
            terminalreporter.write_line(str(path.relative_to(ROOT)))
