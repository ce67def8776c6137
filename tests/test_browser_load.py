"""Load: eight browser sessions upload a photo on Predict at once, on one server, while a training
run goes on. Every session gets its four labels and heat maps with no exception, and the run is
not disturbed: it completes with every epoch and no error.

The run trains into the server's own runs folder (so the app sees it, as it would a user's) and
is deleted at the end, leaving the folder as the other browser tests expect it. `make bench`'s
load section measures the same thing with the same helper (tests/browser.py). A fresh server's
first page views, all at once, open without an import race.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import time

import pytest

pytest.register_assert_rewrite("browser")

from browser import (  # noqa: E402
    LABEL_TITLES,
    grace_hopper,
    launch_small_run,
    portrait_photo,
    predict_in_sessions,
    served_app,
)

from portrait_core.training.runs import FINAL_STATES, Run, process_alive  # noqa: E402

pytest_plugins = ("browser",)

SESSIONS = 8
# Enough epochs to outlast the sessions: on 2 busy cores the run was at epoch 12 when the eight
# sessions had their labels (about a second an epoch under their load), so 30 leaves a margin.
EPOCHS = 30
FIRST_VIEWS = 4  # sessions opening a fresh server's Predict at once
RUN_WAIT_S = 180  # the training process imports TensorFlow (10-30 s), then trains


def wait_until(done, what: str, run: Run, timeout: float = RUN_WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            log = (run.path / "train.log").read_text()[-3000:]
            pytest.fail(f"the run never got {what}; status {run.status}\n{log}")
        time.sleep(0.25)


@pytest.fixture
def training(app_state, browser_data):
    """A small run training in its own process into the server's runs folder; removed after."""
    run = launch_small_run(browser_data, app_state / "runs", EPOCHS)
    yield run
    pid = run.status.get("pid")
    if run.state not in FINAL_STATES and process_alive(pid, run.status.get("pid_start")):
        os.kill(pid, signal.SIGKILL)  # a failed test must not leave TensorFlow running
    shutil.rmtree(run.path, ignore_errors=True)


def test_eight_sessions_predict_at_once_while_a_run_trains(
    app_server, chromium, browser_data, training, tmp_path
):
    run = training
    photo = portrait_photo(grace_hopper(), tmp_path / "portrait.jpg")

    def training_under_way() -> None:  # the sessions' pages are open: upload once it trains
        wait_until(lambda: run.state == "running" and run.history, "its first epoch", run)

    started = time.monotonic()
    seen = predict_in_sessions(chromium, app_server, photo, SESSIONS, ready=training_under_way)
    sessions_s = time.monotonic() - started
    still_training, epochs_then = run.state == "running", len(run.history)

    for i, session in enumerate(seen):
        assert session.exception is None, f"session {i}: {session.exception}"
        assert session.labels == list(LABEL_TITLES), f"session {i}: {session.labels}"
        assert session.overlays == len(LABEL_TITLES), f"session {i}: {session.overlays} heat maps"
        assert 0 < session.seconds < 180, f"session {i}: {session.seconds} s"
    assert still_training, (
        f"the run ended ({run.state}, {epochs_then} epochs) before the sessions did: "
        "raise EPOCHS so that it trains under the load"
    )

    wait_until(lambda: run.state in FINAL_STATES, "to a final state", run)
    assert run.state == "completed", run.status
    assert run.status.get("error") is None
    assert "Traceback" not in (run.path / "train.log").read_text(errors="replace")
    assert [r["epoch"] for r in run.history] == list(range(1, EPOCHS + 1))
    assert run.metrics is not None and not run.problems
    times = sorted(s.seconds for s in seen)
    print(
        f"\n{SESSIONS} sessions: labels after median {statistics.median(times):.2f} s, "
        f"worst {times[-1]:.2f} s; sessions {sessions_s:.1f} s in all; the run was at epoch "
        f"{epochs_then}/{EPOCHS} when they ended"
    )


# A race, found by the load test: pages/common.py called st.rerun() while it was being
# imported, and sessions importing it at the same time got "ImportError: cannot import name
# 'choose_dataset'" (2 to 7 of 8 here). It now leaves that mode from choose_dataset().
def test_a_fresh_servers_first_sessions_all_open_predict(chromium, browser_data, tmp_path):
    photo = portrait_photo(grace_hopper(), tmp_path / "portrait.jpg")
    with served_app(browser_data, tmp_path, warm_up=False) as url:
        seen = predict_in_sessions(chromium, url, photo, FIRST_VIEWS, settle_first=False)
    assert all(s.exception is None and s.labels == list(LABEL_TITLES) for s in seen)
