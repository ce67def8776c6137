"""Browser-test harness: `streamlit run app.py` on a free port, driven by Playwright + Chromium.

Use it from a test module in tests/ (pytest puts that folder on sys.path; `tests.browser` would
not do, as a package in site-packages is also called `tests`):

    from browser import assert_no_exception, open_page, screenshot
    pytest_plugins = ("browser",)  # registers the fixtures below

`app_server` (session) serves the app on a small synthetic data set and yields its base URL;
`page` is a fresh Chromium tab per test. Chromium is Debian's /usr/bin/chromium, since
`playwright install` cannot download browsers here (NOTES.md §3).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from portrait_core.paths import PROJECT, serve_command

CHROMIUM = os.environ.get("PORTRAIT_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = PROJECT / "tests" / "screenshots"  # git-ignored; look at them after a run
VIEWPORT = {"width": 1440, "height": 1000}
MAX_SCREENSHOT_HEIGHT = 8000  # px; a longer page is cut, which is still enough to read it
SERVER_START_S = 60  # a cold start imports Streamlit and pandas: seconds, not a minute
SCRIPT_RUN_MS = 60_000  # the longest a page may take to finish its script run
BROWSER_DATA_N = 150  # pictures in the served data set: enough for every chart, quick to read
APP_IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
EXCEPTION = "[data-testid='stException']"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll /_stcore/health until it answers ok; fail with the server's log if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"streamlit did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def browser_data(tmp_path_factory) -> Path:
    """A small synthetic set in the AI Hub layout, shared by every browser test."""
    from portrait_core.synth import generate

    root = tmp_path_factory.mktemp("browser-data")
    generate(root, BROWSER_DATA_N, seed=7, size=64, progress=False, workers=1)
    return root


@pytest.fixture(scope="session")
def app_server(browser_data, tmp_path_factory) -> Iterator[str]:
    """`streamlit run app.py` on a free port; yields its base URL; stopped after the session.

    Runs and caches go to a temporary folder, so tests never see (or write) the user's runs.
    """
    state = tmp_path_factory.mktemp("app-state")
    port = free_port()
    env = {
        **os.environ,
        "PORTRAIT_LAB_DATA": str(browser_data),
        "PORTRAIT_LAB_RUNS": str(state / "runs"),
        "PORTRAIT_LAB_CACHE": str(state / "cache"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PORTRAIT_LAB_WARM_UP": "1",  # as a user's server runs
    }
    log = state / "streamlit.log"
    command = serve_command(port)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log, SERVER_START_S)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the session (Playwright's sync API)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (see .ci/run)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def browser_context(chromium):
    """One browser context for the session: tabs share its HTTP cache, so Streamlit's and
    plotly's JavaScript is fetched and compiled once, not per test. Each tab is still its own
    Streamlit session (sessions follow the websocket, not cookies)."""
    context = chromium.new_context(viewport=VIEWPORT)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(browser_context):
    """A fresh tab, so a fresh Streamlit session, per test."""
    tab = browser_context.new_page()
    try:
        yield tab
    finally:
        tab.close()


def wait_idle(page, timeout_ms: int = SCRIPT_RUN_MS) -> None:
    """Wait until the app's script run has finished (Streamlit's own e2e tests do the same)."""
    page.wait_for_selector(APP_IDLE, timeout=timeout_ms)


def open_page(page, base_url: str, path: str = "") -> None:
    """Go to base_url/path and wait until the page's script has run to its end."""
    page.goto(f"{base_url}/{path.lstrip('/')}")
    wait_idle(page)


def assert_no_exception(page) -> None:
    """Fail, quoting the traceback, if the page shows any Streamlit exception box."""
    boxes = page.locator(EXCEPTION)
    if boxes.count():
        pytest.fail(f"{page.url} shows an exception:\n{boxes.first.inner_text()[:3000]}")


def screenshot(page, name: str) -> Path:
    """Save the whole page as tests/screenshots/NAME.png and return the path.

    Streamlit scrolls inside its main container, not the document, so Playwright's full_page
    sees one viewport: the window is made as tall as the content for the shot, then restored.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    size = page.viewport_size or VIEWPORT
    height = page.evaluate(
        "Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
        "[data-testid=stSidebarContent]')].map(e => e.scrollHeight), 0)"
    )
    tall = min(max(size["height"], int(height)), MAX_SCREENSHOT_HEIGHT)
    page.set_viewport_size({"width": size["width"], "height": tall})
    try:
        page.wait_for_timeout(300)  # charts re-lay themselves out for the new size
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    return path
