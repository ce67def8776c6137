"""A killed run resumes (`train --resume RUN`): SIGKILL in the middle of epoch 3 of 6, then
resumed from the backup of epoch 2 (Keras' BackupAndRestore, plus the callbacks' state)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest

from portrait_core.cli import main
from portrait_core.paths import PROJECT
from portrait_core.training.callbacks import BestModelSaver, ResumeState, TimeBudget
from portrait_core.training.runs import RunStore

EPOCHS = 6  # four epochs left the training loss within noise of its start (CI: a gain of 0.099)


def train_args(data: Path, out: Path) -> list[str]:
    # a cosine schedule: the learning rate of each epoch follows the optimizer's step count, so
    # it shows whether the step count was restored (a fresh optimizer would start the cosine again)
    return [
        "train", "--data", str(data), "--model", "cnn_custom", "--attributes", "gender,age",
        "--image-size", "64", "--epochs", str(EPOCHS), "--batch-size", "4", "--lr", "3e-3",
        "--optimizer", "adamw", "--schedule", "cosine", "--warmup-epochs", "1",
        "--seed", "1", "--out", str(out),
    ]  # fmt: skip


def history(run_path: Path) -> list[dict]:
    return [json.loads(line) for line in (run_path / "history.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(synthetic_small, tmp_path_factory):
    """(a run never stopped, the same run killed during epoch 3 and resumed)."""
    base = tmp_path_factory.mktemp("resume")
    assert main(train_args(synthetic_small, base / "whole")) == 0
    (whole,) = (base / "whole").iterdir()

    killed = base / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "portrait_core", *train_args(synthetic_small, killed)],
        cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline:
        found = list(killed.glob("*/status.json"))
        status = json.loads(found[0].read_text() or "{}") if found else {}
        if status.get("epoch") == 3:  # written as epoch 3 begins
            break
        time.sleep(0.02)
    time.sleep(0.3)  # into epoch 3 (an epoch here takes well over a second)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    (run_path,) = killed.iterdir()
    before = history(run_path)
    assert main(["train", "--resume", run_path.name, "--out", str(killed)]) == 0
    return whole, run_path, before


def test_the_killed_run_reads_as_died_before_and_completes_after(runs):
    whole, resumed, before = runs
    assert [r["epoch"] for r in before] == [1, 2]  # killed in epoch 3
    run = RunStore(resumed.parent).get(resumed.name)
    assert run.state == "completed" and run.status["resumed"] == 1
    assert not (resumed / "backup").exists()  # removed once the run is over


def test_history_has_every_epoch_once_and_keeps_the_first_two(runs):
    whole, resumed, before = runs
    after = history(resumed)
    assert [r["epoch"] for r in after] == list(range(1, EPOCHS + 1))
    assert after[:2] == before  # the epochs before the kill are kept as they were


def test_the_optimizer_and_schedule_go_on_where_they_were(runs):
    whole, resumed, _ = runs
    # the learning rate is the cosine at the optimizer's step count: equal epoch by epoch
    # means the step count was restored, not restarted
    rates = [r["learning_rate"] for r in history(resumed)]
    assert rates == pytest.approx([r["learning_rate"] for r in history(whole)], rel=1e-6)
    assert rates[2] < rates[1]  # the cosine had passed its peak: a restart would warm up again


def test_the_result_equals_an_unstopped_run_within_noise(runs):
    whole, resumed, _ = runs
    a, b = history(whole), history(resumed)
    # restored weights: epoch 3 continues from epoch 2's loss, far below a fresh start's
    assert b[2]["loss"] < b[0]["loss"] - 0.5 * (b[0]["loss"] - b[1]["loss"])
    # two runs never stopped differ too (measured here: validation losses 0.08 apart after
    # two epochs, on 24 validation pictures). Here the loss sits at chance level (ln 2 + ln 5 =
    # 2.30) for two or three epochs, and when a run leaves it is chance too: measured, four
    # pairs of a whole and a resumed run (gains of the whole run 0.38 to 0.47), final training
    # losses 0.01, 0.05, 0.11 and once 0.32 apart (a resumed run that left chance level
    # two epochs late, still 0.07 below where it was killed). So the check is that the resumed
    # run goes on learning from where it was killed and ends within the whole run's own gain.
    progress = a[0]["loss"] - a[-1]["loss"]
    assert progress > 0.1
    assert b[-1]["loss"] < b[1]["loss"]
    assert abs(a[-1]["loss"] - b[-1]["loss"]) < progress
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 2 and metrics["epochs_run"] == EPOCHS
    assert metrics["attributes"]["gender"]["n"] > 0


def test_callback_state_survives_a_new_fit(tmp_path):
    """EarlyStopping and ReduceLROnPlateau forget their counters at every fit's start; the
    saved state puts them back after that."""
    saver = BestModelSaver(tmp_path / "model.keras")
    early = keras.callbacks.EarlyStopping("val_loss", patience=5)
    plateau = keras.callbacks.ReduceLROnPlateau("val_loss", patience=3)
    budget = TimeBudget(10)
    for c in (early, plateau, budget):
        c.on_train_begin()
    early.wait, early.best, early.best_epoch = 2, 0.75, 4
    plateau.wait, plateau.best, plateau.cooldown_counter = 1, 0.75, 0
    saver.best, saver.best_epoch = 0.75, 5
    budget._start -= 120
    budget._plan(7)  # the epochs that fit, as measured so far: the schedule resumes with them
    state = json.loads(json.dumps(ResumeState(tmp_path, early, plateau, saver, budget).snapshot(6)))

    fresh = (
        keras.callbacks.EarlyStopping("val_loss", patience=5),
        keras.callbacks.ReduceLROnPlateau("val_loss", patience=3),
        BestModelSaver(tmp_path / "model.keras"),
        TimeBudget(10),
    )
    restore = ResumeState(tmp_path, *fresh, restored=state)
    for c in (*fresh, restore):  # the order of fit's callback list: restore last
        c.on_train_begin()
    e, p, s, b = fresh
    assert (e.wait, e.best, e.best_epoch) == (2, 0.75, 4)
    assert (p.wait, p.best) == (1, 0.75)
    assert (s.best, s.best_epoch) == (0.75, 5)
    assert time.time() - b._start == pytest.approx(120, abs=5)
    assert b.planned_epochs == 7


def test_a_run_that_cannot_resume_is_one_line(runs, capsys):
    whole, _, _ = runs
    assert main(["train", "--resume", whole.name, "--out", str(whole.parent)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: run {whole.name} completed: there is nothing to resume"
    )


def test_the_app_refuses_to_resume_a_completed_run(runs):
    from portrait_core.training.launch import launch_resume

    whole, _, _ = runs
    with pytest.raises(ValueError, match="nothing to resume"):
        launch_resume(RunStore(whole.parent).get(whole.name))


def test_a_stopped_run_keeps_its_last_whole_epoch_and_resumes(synthetic_small, tmp_path):
    """Stop (the page's button, `stop RUN`) during epoch 2 of 3: Keras ends that epoch after the
    current batch and reports it, but only epoch 1 is backed up; the cancelled run resumes
    from it, does epoch 2 again in full, and completes with each epoch once."""
    import threading

    from portrait_core.training.config import make_config
    from portrait_core.training.train import run_training

    config = make_config(str(synthetic_small), "cnn_custom", attributes=["gender"], image_size=32,
                         epochs=3, batch_size=4, out=str(tmp_path))  # fmt: skip
    run = RunStore(tmp_path).create(config.model, config.attributes)

    def stop_in_epoch_2():
        deadline = time.time() + 300
        while time.time() < deadline and run.status.get("epoch") != 2:
            time.sleep(0.02)
        run.request_stop()  # as epoch 2 begins: its first batch ends it

    watcher = threading.Thread(target=stop_in_epoch_2, daemon=True)
    watcher.start()
    run_training(config, run)
    watcher.join()
    assert run.state == "cancelled"
    assert [r["epoch"] for r in history(run.path)] == [1, 2]  # the cut-short epoch is shown
    assert run.backed_up_epoch == 1 and run.resume_problem is None  # but not backed up
    assert main(["train", "--resume", run.id, "--out", str(tmp_path)]) == 0
    assert run.state == "completed" and run.status["resumed"] == 1
    assert [r["epoch"] for r in history(run.path)] == [1, 2, 3]
    assert not (run.path / "backup").exists()
