"""Faults: a training process killed -9 mid-epoch, a pid handed to another process, damaged run
folders (status.json, history.jsonl, metrics.json). A run that has lost its process reads as
failed at once, saying so; a damaged run says what is wrong with it, on the Train and Compare
pages too, and the other runs are shown as before.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from portrait_core import leaderboard, paths
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES
from portrait_core.training.runs import (
    FINAL_STATES,
    NEVER_STARTED,
    NO_PID_GRACE_S,
    PROCESS_DIED,
    Run,
    RunStore,
    process_alive,
    process_start,
)

APP = str(paths.PROJECT / "app.py")
RUN_WAIT_S = 240  # the training process imports TensorFlow (10-30 s on 2 busy cores), then trains


def texts(elements) -> str:
    return "\n".join(e.value for e in elements)


def write_status(run: Run, **fields) -> None:
    """status.json as given, bypassing set_status (which records the pid's start time itself)."""
    (run.path / "status.json").write_text(json.dumps({"updated": time.time(), **fields}))


def wait_until(done, what: str, run: Run, timeout: float = RUN_WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            log = (run.path / "train.log").read_text()[-3000:]
            pytest.fail(f"the run never got {what}; status {run.status}\n{log}")
        time.sleep(0.2)


# --- a run whose process is gone ---------------------------------------------------------------
def test_a_running_run_whose_process_is_gone_is_failed_at_once(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    run = RunStore(tmp_path).create("cnn_custom", ("gender",))
    run.set_status(state="running", pid=child.pid, started=time.time())
    deadline = time.monotonic() + 30
    while process_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    # exited, not yet waited for: a zombie, which is dead
    assert run.state == "failed"  # at once: no grace period for a run that had a pid
    assert run.status["error"] == PROCESS_DIED
    assert run.status["finished"] == run.status["updated"]  # its last sign of life
    child.wait()  # gone altogether
    assert run.state == "failed" and run.status["error"] == PROCESS_DIED
    assert json.loads((run.path / "status.json").read_text())["state"] == "running"  # read-only


def test_runs_list_newest_first_by_when_they_were_made_whatever_their_names(tmp_path):
    """Ids made by the store start with their time; a run named by hand (`--run-name`, a
    multiworker run) sorts by when it was made too, and a damaged status as oldest."""
    store = RunStore(tmp_path)
    first = store.create("cnn_custom", ["gender"])
    named = store.create("cnn_custom", ["gender"], run_id="a-named-run")
    last = store.create("cnn_custom", ["gender"], run_id="00-also-named")
    for age, run in enumerate((last, named, first)):  # created 0, 10 and 20 s ago
        status = json.loads((run.path / "status.json").read_text())
        (run.path / "status.json").write_text(json.dumps({**status, "created": 1e9 - 10 * age}))
    broken = store.create("cnn_custom", ["gender"], run_id="zz-broken")
    (broken.path / "status.json").write_text("[1, 2]")
    assert [r.id for r in store.list()] == [last.id, named.id, first.id, broken.id]


def test_a_pid_given_to_another_process_is_not_the_runs_process(tmp_path):
    run = RunStore(tmp_path).create("cnn_custom", ("gender",))
    run.set_status(state="running", pid=os.getpid())  # alive: this very process
    recorded = run.status["pid_start"]
    assert recorded == process_start(os.getpid()) and recorded is not None
    assert run.state == "running"
    # the same pid, started at another time: the run's process died and the pid was reused
    write_status(run, state="running", pid=os.getpid(), pid_start=recorded - 1)
    assert run.state == "failed" and run.status["error"] == PROCESS_DIED
    # a status written before start times were recorded: the pid alone decides
    write_status(run, state="running", pid=os.getpid())
    assert run.state == "running"


@pytest.mark.parametrize("pid", [0, -5, "1234", True, 2**40])
def test_a_pid_that_is_no_process_id_is_dead(tmp_path, pid):
    assert not process_alive(pid) and process_start(pid) is None
    run = RunStore(tmp_path).create("cnn_custom", ("gender",))
    write_status(run, state="running", pid=pid)
    assert run.state == "failed"


def test_a_queued_run_without_a_process_waits_then_says_it_never_started(tmp_path):
    run = RunStore(tmp_path).create("cnn_custom", ("gender",))  # the launcher is about to start it
    assert run.state == "queued"
    write_status(run, state="queued", updated=time.time() - NO_PID_GRACE_S - 1)
    assert run.state == "failed" and run.status["error"] == NEVER_STARTED


# --- damaged run folders -------------------------------------------------------------------------
def status_not_json(run: Path) -> None:
    (run / "status.json").write_text('{"state": "completed", "epoch": ')  # cut short


def status_binary(run: Path) -> None:
    (run / "status.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + bytes(range(256)))


def status_a_list(run: Path) -> None:
    (run / "status.json").write_text('["completed", 2]')


def history_half_written(run: Path) -> None:
    lines = (run / "history.jsonl").read_text().splitlines()
    garbage = "\x00\x00 {epoch: nope"
    (run / "history.jsonl").write_text(f"{lines[0]}\n{garbage}\n{lines[1]}\n{lines[1][:17]}")


def metrics_missing(run: Path) -> None:
    (run / "metrics.json").unlink()


# case -> (damage, words the problem must hold, whether the run keeps its test metrics)
DAMAGE = {
    "status-not-json": (status_not_json, "status.json is not valid JSON", True),
    "status-binary": (status_binary, "status.json is not valid JSON", True),
    "status-a-list": (status_a_list, "status.json holds a list, not a JSON object", True),
    "history": (history_half_written, "history.jsonl line 2 is not an epoch record", True),
    "no-metrics": (metrics_missing, "metrics.json is missing", False),
}


def damaged_copy(trained: Run, root: Path, case: str) -> Run:
    """A copy of a finished run under root, named so that it sorts before the healthy one."""
    path = root / f"29990101-000000-000_{case}"
    shutil.copytree(trained.path, path)
    DAMAGE[case][0](path)
    return Run(path)


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_run_says_what_is_wrong_and_reads_what_it_can(trained_run, tmp_path, case):
    _, words, keeps_metrics = DAMAGE[case]
    run = damaged_copy(trained_run, tmp_path, case)
    problems = run.problems
    assert any(words in p for p in problems), problems
    assert isinstance(run.status, dict) and isinstance(run.config, dict)
    assert run.state == ("unknown" if case.startswith("status") else "completed")
    assert (run.metrics is not None) == keeps_metrics
    assert [r["epoch"] for r in run.history] == [1, 2]  # the garbage and the cut line left out
    if case == "history":
        assert "history.jsonl ends in a half-written line (left out)" in problems
    assert not Run(trained_run.path).problems  # the original is untouched and healthy


def test_a_running_runs_unfinished_history_line_is_no_problem(tmp_path):
    run = RunStore(tmp_path).create("cnn_custom", ("gender",))
    run.set_status(state="running", pid=os.getpid())
    run.append_history({"epoch": 1, "loss": 1.0})
    with open(run.path / "history.jsonl", "a") as f:
        f.write('{"epoch": 2, "lo')  # the trainer is writing it right now
    assert [r["epoch"] for r in run.history] == [1]
    assert run.problems == []


@pytest.fixture
def damaged_runs(monkeypatch, tmp_path, trained_run, synthetic_small) -> dict[str, Run]:
    """A runs folder for the pages: the healthy trained run and one damaged copy per case."""
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setattr(leaderboard, "RUNS", runs)
    monkeypatch.setattr(leaderboard, "DEFAULT_MODEL", tmp_path / "no-default")
    monkeypatch.setattr(paths, "DEFAULT_DATA", synthetic_small)
    monkeypatch.setenv("PORTRAIT_LAB_DATA", str(synthetic_small))
    shutil.copytree(trained_run.path, runs / trained_run.id)
    found = {case: damaged_copy(trained_run, runs, case) for case in DAMAGE}
    return {"healthy": Run(runs / trained_run.id), **found}


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_train_page_lists_every_run_and_says_what_is_wrong_with_each(damaged_runs):
    at = open_page("pages/train.py")
    (frame,) = [d.value for d in at.dataframe if "problems" in d.value.columns]
    rows = dict(zip(frame["run"], frame["problems"], strict=True))
    assert set(rows) == {r.id for r in damaged_runs.values()}
    assert rows[damaged_runs["healthy"].id] == ""
    for case, (_, words, _) in DAMAGE.items():
        assert words in rows[damaged_runs[case].id], (case, rows)

        at.selectbox(key="run_select").set_value(damaged_runs[case].id).run()
        assert not at.exception, (case, [e.value for e in at.exception])
        assert words in texts(at.warning), case
        assert len(at.get("plotly_chart")) == 1, case  # its curves, from what could be read

    at.selectbox(key="run_select").set_value(damaged_runs["healthy"].id).run()
    assert not at.exception and not at.warning
    assert "completed" in texts(at.markdown)
    assert any("balanced_accuracy" in d.value.columns for d in at.dataframe)  # its test metrics


def test_compare_page_says_what_is_wrong_and_keeps_the_other_runs(damaged_runs):
    at = open_page("pages/compare.py")
    warning = texts(at.warning)
    for case, (_, words, _) in DAMAGE.items():
        assert f"`{damaged_runs[case].id}`: " in warning and words in warning, case
    assert damaged_runs["healthy"].id not in warning

    (board,) = [d.value for d in at.dataframe if "params" in d.value.columns]
    on_board = {case for case, run in damaged_runs.items() if run.id in set(board["run"])}
    assert on_board == {"healthy"} | {c for c, (_, _, keeps) in DAMAGE.items() if keeps}
    healthy = board[board["run"] == damaged_runs["healthy"].id]
    assert len(healthy) == len(ATTRIBUTE_KEYS)
    assert healthy["balanced_accuracy"].notna().all()
    charts = [json.loads(c.proto.spec)["data"][0]["type"] for c in at.get("plotly_chart")]
    assert charts == ["scatter", "heatmap", "bar"]  # curves, confusion matrix, per-class scores


# --- kill -9 mid-epoch ----------------------------------------------------------------------------
@pytest.fixture
def runs_for_pages(monkeypatch, tmp_path, synthetic_small) -> Path:
    runs = tmp_path / "runs"
    monkeypatch.setattr(leaderboard, "RUNS", runs)
    monkeypatch.setattr(leaderboard, "DEFAULT_MODEL", tmp_path / "no-default")
    monkeypatch.setattr(paths, "DEFAULT_DATA", synthetic_small)
    monkeypatch.setenv("PORTRAIT_LAB_DATA", str(synthetic_small))
    yield runs
    for run in RunStore(runs).list():  # a failed test must not leave TensorFlow running
        pid = run.status.get("pid")
        if run.state not in FINAL_STATES and process_alive(pid, run.status.get("pid_start")):
            os.kill(pid, signal.SIGKILL)


def test_a_run_killed_mid_epoch_is_failed_keeps_its_best_model_and_the_next_run_completes(
    runs_for_pages, synthetic_small
):
    from portrait_core import load_predictor
    from portrait_core.training.config import make_config
    from portrait_core.training.launch import launch_training

    def config(epochs: int):
        return make_config(
            str(synthetic_small),
            "cnn_custom",
            image_size=48,
            epochs=epochs,
            batch_size=8,
            early_stop_patience=epochs,  # random-ish labels: it must not stop by itself
            out=str(runs_for_pages),
        )

    run = launch_training(config(200))
    # after an epoch (so model.keras exists), while a later one is under way
    wait_until(
        lambda: (
            run.model_file.exists()
            and run.history
            and run.status.get("epoch", 0) > len(run.history)
            and run.status.get("batch", 0) >= 1
        ),
        "to a later epoch",
        run,
    )
    pid = run.status["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_alive(pid, run.status["pid_start"]) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert run.state == "failed", run.status  # at once, not after a grace period
    assert run.status["error"] == PROCESS_DIED
    assert run.status["pid_start"] is not None  # recorded beside the pid
    assert run.metrics is None and run.history
    assert set(run.problems) <= {"history.jsonl ends in a half-written line (left out)"}

    picture = Image.open(synthetic_small / "1.png")
    predicted = load_predictor(run.path).predict(picture)  # the best epoch's model, as saved
    assert set(predicted) == set(ATTRIBUTE_KEYS)
    for attr, result in predicted.items():
        assert result["label"] in ATTRIBUTES[attr].classes
        assert sum(result["probs"].values()) == pytest.approx(1.0, abs=1e-4)

    at = open_page("pages/train.py")
    assert at.selectbox(key="run_select").value == run.id
    assert ":red-badge[:material/error: failed]" in texts(at.markdown)
    assert PROCESS_DIED in texts(at.error)
    assert "best model so far" in texts(at.caption)
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert f"`{run.id}` ({PROCESS_DIED})" in texts(at.caption)

    after = launch_training(config(2))
    wait_until(lambda: after.state in FINAL_STATES, "to a final state", after)
    assert after.state == "completed", after.status
    assert after.status.get("error") is None
    assert [r["epoch"] for r in after.history] == [1, 2]
    assert after.metrics is not None and not after.problems
    assert run.state == "failed"  # the killed run stays as it was
