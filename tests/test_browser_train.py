"""Train and Compare in a real browser: start a tiny run, watch its curves grow, stop it, compare it.

The server (tests/browser.py) keeps its runs in a temporary folder (PORTRAIT_LAB_RUNS), so this
never touches the user's runs; the run is deleted through Compare at the end, leaving the folder
as the other browser tests expect it. Screenshots land in tests/screenshots/.
"""

from __future__ import annotations

import re
import time

import pytest

from portrait_core.training.runs import Run

pytest.register_assert_rewrite("browser")

from browser import assert_no_exception, open_page, screenshot, wait_idle  # noqa: E402

pytest_plugins = ("browser",)

# Generous: they bound a failure's wait only. On 2 cores shared with the browser and the server:
FIRST_EPOCH_MS = 240_000  # the process imports TensorFlow (10-30 s), measures framing, epoch 1
GROW_S = 180  # a later epoch of 2 steps at 48 px takes a second or two, more on busy cores
# (once, 2026-12-05, under the other test worker's load, the chart stood at 4 epochs for 90 s
# while the run wrote 30: the page's refresh, not the run, was late; a failure says which)
STOP_MS = 240_000  # stops after its batch, scores its best model, measures faithfulness
RUN_ID = re.compile(r"\d{8}-\d{6}-\d{3}_\S+")
CHART = "[data-testid='stPlotlyChart']"
POINTS = f"{CHART} .scatterlayer .point"  # one marker per epoch, head and split


def set_number(page, label: str, value: int) -> None:
    """Type into a number input and commit it (Enter), then wait for the rerun to end."""
    box = page.get_by_role("spinbutton", name=label)
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_timeout(300)  # let the rerun begin before waiting for its end
    wait_idle(page)


def test_start_watch_stop_and_compare_a_tiny_run(app_server, app_state, page):
    open_page(page, app_server, "train")
    page.get_by_role("heading", name="Train", level=1).wait_for()
    assert_no_exception(page)
    screenshot(page, "train-form")

    set_number(page, "Image size (px)", 48)
    set_number(page, "Epochs", 500)  # still running when watched: 60 epochs took 68 s here
    set_number(page, "Batch size", 16)
    page.get_by_text("Advanced").click()
    set_number(page, "Max steps per epoch", 2)
    set_number(page, "Early-stop patience", 100)  # random labels: it must not stop by itself
    page.get_by_test_id("stMain").get_by_role("button", name="Start").click()
    # The run picker appears once the run folder exists (the toast may be gone on a slow machine).
    page.locator("[data-testid='stSelectbox']").filter(has_text="Show run").wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)
    picker = page.locator("[data-testid='stSelectbox']").filter(has_text="Show run")
    chosen = picker.locator("input").input_value()  # the new run, shown at once
    assert RUN_ID.fullmatch(chosen.split(" · ")[0]), chosen
    run_id = chosen.split(" · ")[0]

    # The curves appear and grow with no user action: the fragment re-reads the run folder.
    page.locator(f"{CHART} .main-svg").first.wait_for(timeout=FIRST_EPOCH_MS)
    first = page.locator(POINTS).count()
    assert first > 0
    deadline = time.monotonic() + GROW_S
    while page.locator(POINTS).count() <= first and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    grown = page.locator(POINTS).count()
    if grown <= first:  # say whether the run or the page stood still
        screenshot(page, "train-not-growing")
        history = app_state / "runs" / run_id / "history.jsonl"
        epochs = len(history.read_text().splitlines()) if history.exists() else 0
        pytest.fail(
            f"the curves did not grow within {GROW_S} s ({first} points); "
            f"the run's history has {epochs} epochs"
        )
    assert page.get_by_text("Time left").count() == 1
    assert_no_exception(page)
    screenshot(page, "train-running")

    # in the page, not Streamlit's own "Stop" (script running) nor "Help for Early-stop…"
    stop = page.get_by_test_id("stMain").get_by_role("button", name=re.compile(r"Stop$"))
    stop.click()
    page.locator("[data-testid='stMarkdownContainer']", has_text="cancelled").first.wait_for(
        timeout=STOP_MS
    )
    wait_idle(page)
    page.get_by_text("Test metrics").wait_for()
    assert stop.count() == 0
    # a stopped run keeps the backup of its last whole epoch: it can be resumed
    resume = page.get_by_role("button", name=re.compile(r"Resume from epoch [1-9]\d*"))
    assert resume.count() == 1, page.get_by_test_id("stMain").inner_text()[-1500:]
    backed_up = int(re.search(r"\d+", resume.inner_text()).group())
    # The caption names an epoch cut short; Stop may also land between two epochs (none is).
    run = Run(app_state / "runs" / run_id)
    assert run.backed_up_epoch == backed_up
    shown = max(int(r["epoch"]) for r in run.history)
    cut = page.get_by_text(re.compile(r"Epoch \d+ was cut short"))
    if shown > backed_up:
        assert page.get_by_text(f"Epoch {shown} was cut short").count() == 1
    else:
        assert cut.count() == 0
    assert_no_exception(page)
    screenshot(page, "train-stopped")

    # Compare lists it: the leaderboard (a canvas), the curves' run picker, the detail picker.
    open_page(page, app_server, "compare")
    page.get_by_role("heading", name="Leaderboard").wait_for()
    page.locator(f"{CHART} .main-svg").nth(2).wait_for()  # curves, confusion matrix, per class
    assert page.get_by_text(run_id).count() >= 1  # the curves: picker tag, legend
    pickers = [box.input_value() for box in page.locator("[data-testid='stSelectbox'] input").all()]
    assert sum(v.startswith(run_id) for v in pickers) == 2, pickers  # detail run, run to delete
    # leaderboard, best runs, heat-map faithfulness
    assert page.locator("[data-testid='stDataFrame']").count() == 3
    assert_no_exception(page)
    screenshot(page, "compare-run")

    # Deleting asks first, then the page says so and shows the empty state.
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("button", name="Yes, delete it").click()
    page.get_by_text(f"Deleted {run_id}").wait_for()
    page.get_by_text("No runs yet").wait_for()
    assert_no_exception(page)
