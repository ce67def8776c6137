"""Start a training run in its own process, so that no page, reload or closed tab can block or
kill it. The run folder exists (state "queued") before this returns, so the app shows it at once.
TensorFlow is not imported here: the child process imports it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from portrait_core.paths import PROJECT
from portrait_core.training.config import TrainConfig
from portrait_core.training.runs import Run, RunStore, write_json_atomic


def spawn(args: list[str], log_path: Path) -> subprocess.Popen:
    """`python -m portrait_core ARGS` in its own session (a Ctrl-C or a dying app leaves it
    running), its output appended to log_path. Runs, resumed runs and sweeps start this way."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "portrait_core", *args],
            cwd=PROJECT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()


def launch_training(config: TrainConfig) -> Run:
    run = RunStore(config.out).create(config.model, config.attributes)
    write_json_atomic(run.path / "request.json", config.to_dict())
    process = spawn(["train", "--from-run", str(run.path)], run.path / "train.log")
    run.set_status(pid=process.pid)
    return run


def launch_resume(run: Run) -> Run:
    """Continue a killed, failed or cancelled run in its own process (`train --resume`), from
    its last backed-up epoch; raises ValueError saying why when it cannot be resumed."""
    problem = run.resume_problem
    if problem:
        raise ValueError(problem)
    args = ["train", "--resume", run.id, "--out", str(run.path.parent), "--launched"]
    process = spawn(args, run.path / "train.log")
    # queued until the child takes over: the page shows it starting, not a second Resume button
    run.set_status(state="queued", pid=process.pid, error=None)
    return run
