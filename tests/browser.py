"""Browser-test harness: `streamlit run app.py` on a free port, driven by Playwright + Chromium.

Use it from a test module in tests/ (pytest puts that folder on sys.path; `tests.browser` would
not do, as a package in site-packages is also called `tests`):

    from browser import assert_no_exception, open_page, screenshot
    pytest_plugins = ("browser",)  # registers the fixtures below

`app_server` (session) serves the app on a small synthetic data set and yields its base URL;
its runs folder is `app_state / "runs"`. `page` is a fresh Chromium tab per test. Chromium is
Debian's /usr/bin/chromium, since `playwright install` cannot download browsers here
(NOTES.md §3). `predict_in_sessions` uploads a photo in several sessions at once (the load
test, and `make bench`'s load section, which imports this file).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
PREDICTION_MS = 180_000  # the first prediction may import TensorFlow and load the model
LABEL_TITLES = ("Gender:", "Age band:", "Face shape:", "Hairstyle:")  # Predict's four labels


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
def app_state(tmp_path_factory) -> Path:
    """The served app's own folder: runs/ (PORTRAIT_LAB_RUNS), cache/ and streamlit.log."""
    return tmp_path_factory.mktemp("app-state")


@pytest.fixture(scope="session")
def app_server(browser_data, app_state) -> Iterator[str]:
    """`streamlit run app.py` on a free port; yields its base URL; stopped after the session.

    Runs and caches go to a temporary folder, so tests never see (or write) the user's runs.
    """
    with served_app(browser_data, app_state) as url:
        yield url


@contextmanager
def served_app(data: Path, state: Path, warm_up: bool = True) -> Iterator[str]:
    """`streamlit run app.py` on a free port, serving `data`, its runs, caches and log in
    `state`; yields its base URL and stops it after. warm_up=False: no background model loading."""
    port = free_port()
    env = {
        **os.environ,
        "PORTRAIT_LAB_DATA": str(data),
        "PORTRAIT_LAB_RUNS": str(state / "runs"),
        "PORTRAIT_LAB_CACHE": str(state / "cache"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PORTRAIT_LAB_WARM_UP": "1" if warm_up else "0",  # on: as a user's server runs
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


def portrait_photo(face: Path, out: Path) -> Path:
    """A 1024x768 JPEG with the portrait in `face` (a real photo: Predict looks for a face
    first) pasted large on a plain background."""
    from PIL import Image

    portrait = Image.open(face).convert("RGB")
    portrait = portrait.resize((round(portrait.width * 700 / portrait.height), 700))
    photo = Image.new("RGB", (1024, 768), (60, 70, 80))
    photo.paste(portrait, ((1024 - portrait.width) // 2, 34))
    photo.save(out, quality=90)
    return out


def grace_hopper() -> Path:
    """matplotlib's sample portrait (matplotlib is a dev requirement): one face, found by MTCNN."""
    import matplotlib

    return Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"


@dataclass
class PredictSession:
    """What one browser session saw after uploading a photo on Predict."""

    seconds: float  # from the upload to all four labels shown (the page's own clock)
    labels: list[str]  # LABEL_TITLES found on the page
    overlays: int  # images shown besides the photo: one heat map per label
    exception: str | None  # the first exception box's text, if any


# Run in the page before the upload: note the time, then the moment all four labels are there.
WATCH_LABELS = """(titles) => {
    window.__labelsAt = null;
    const shown = () => {
        const text = [...document.querySelectorAll("[data-testid='stMarkdownContainer']")]
            .map((e) => e.textContent).join("\\n");
        return titles.every((t) => text.includes(t));
    };
    const observer = new MutationObserver(() => {
        if (window.__labelsAt === null && shown()) {
            window.__labelsAt = performance.now();
            observer.disconnect();
        }
    });
    observer.observe(document.body, {childList: true, subtree: true, characterData: true});
    window.__uploadAt = performance.now();
}"""


def predict_in_sessions(
    browser,
    base_url: str,
    photo: Path,
    sessions: int,
    ready: Callable[[], None] | None = None,
    timeout_ms: int = PREDICTION_MS,
    settle_first: bool = True,
) -> list[PredictSession]:
    """Open Predict in `sessions` browser contexts (each its own Streamlit session), call
    `ready()` (e.g. to wait for a training run to be under way), upload `photo` in all of them
    at once, and report what each saw.

    Each session times itself in its page (a MutationObserver notes when the four labels are
    there), so one session's wait never adds to another's figure. settle_first: the first
    session's page is fully drawn before the others open. A fresh server that gets several
    first page views at once fails most of them (pages/common.py calls st.rerun while it is
    being imported; tests/test_browser_load.py keeps that case, expected to fail until fixed).
    """
    contexts = [browser.new_context(viewport=VIEWPORT) for _ in range(sessions)]
    try:
        pages = [context.new_page() for context in contexts]

        def drawn(page) -> None:
            heading = page.get_by_role("heading", name="Predict", level=1)
            heading.or_(page.locator(EXCEPTION)).first.wait_for(timeout=timeout_ms)
            wait_idle(page, timeout_ms)
            assert_no_exception(page)

        for i, page in enumerate(pages):
            page.goto(f"{base_url}/predict", wait_until="commit")
            if settle_first and i == 0:
                drawn(page)
        for page in pages:
            drawn(page)
        if ready is not None:
            ready()
        for page in pages:  # one after another, but each call only hands the file over
            page.evaluate(WATCH_LABELS, list(LABEL_TITLES))
            page.locator("input[type=file]").set_input_files(str(photo))
        seen = []
        for page in pages:
            page.wait_for_function("window.__labelsAt !== null", timeout=timeout_ms)
            wait_idle(page, timeout_ms)
            boxes = page.locator(EXCEPTION)
            seen.append(
                PredictSession(
                    seconds=page.evaluate("(window.__labelsAt - window.__uploadAt) / 1000"),
                    labels=[t for t in LABEL_TITLES if page.get_by_text(t).count()],
                    # besides the photo with its box, the face's crop and the colour bar
                    overlays=page.locator("[data-testid='stImage'] img").count() - 3,
                    exception=boxes.first.inner_text()[:3000] if boxes.count() else None,
                )
            )
        return seen
    finally:
        for context in contexts:
            context.close()


def launch_small_run(data: Path, runs: Path, epochs: int):
    """A small cnn_custom run in its own process, as the Train page starts one: 48 px, batch 16,
    2 steps an epoch, never stopping early, so it runs all `epochs` (about a second each on 2
    busy cores). Returns its Run."""
    from portrait_core.training.config import make_config
    from portrait_core.training.launch import launch_training

    config = make_config(
        str(data),
        "cnn_custom",
        image_size=48,
        epochs=epochs,
        batch_size=16,
        max_steps_per_epoch=2,
        early_stop_patience=epochs,  # random-ish labels: it must not stop by itself
        out=str(runs),
    )
    return launch_training(config)
