"""`train --distribute multiworker`: two worker processes on 127.0.0.1, as two hosts would be.

TF_CONFIG is checked before TensorFlow starts; two workers reach the weights one process reaches
(through the pipeline, the strategy and Keras' fit that train.py uses); a run through the CLI
whose worker is killed resumes when both are started again, and ends with the chief's run folder
alone, the other worker's folder removed; workers whose backups hold different epochs refuse to
resume, in one line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from portrait_core.paths import PROJECT
from portrait_core.training.config import make_config
from portrait_core.training.runs import Run, RunStore
from portrait_core.training.workers import (
    TF_CONFIG_ENV,
    WORKER_DIR_ENV,
    epoch_mismatch,
    read_tf_config,
    run_name,
    worker_run,
)


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_configs(n: int = 2) -> list[str]:
    """One TF_CONFIG per worker of an n-worker cluster on this machine."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(n)]}
    return [
        json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(n)
    ]


def run_workers(
    argv: list[str], env: dict, timeout: int = 240
) -> list[subprocess.CompletedProcess]:
    """The same command in one process per TF_CONFIG, all at once (they wait for each other)."""
    procs = [
        subprocess.Popen(argv, cwd=PROJECT, env={**env, TF_CONFIG_ENV: config}, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for config in tf_configs()
    ]  # fmt: skip
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return done


GOOD = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}


@pytest.mark.parametrize(
    "tf_config, message",
    [
        ("", "needs TF_CONFIG set on every worker"),
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', 'no "cluster" object'),
        (json.dumps({**GOOD, "cluster": {"ps": ["a:1"]}}), 'has a "ps" job'),
        (json.dumps({**GOOD, "cluster": {"worker": ["a"]}}), 'must list "host:port"'),
        (json.dumps({**GOOD, "task": {"type": "chief"}}), 'needs "task"'),
        (json.dumps({**GOOD, "task": {"type": "worker", "index": 2}}), "index 2 is outside"),
        (json.dumps({**GOOD, "task": {"type": "worker", "index": "1"}}), "whole number"),
    ],
)
def test_a_bad_tf_config_is_one_line_before_tensorflow(tf_config, message):
    with pytest.raises(ValueError, match=message) as raised:
        read_tf_config({TF_CONFIG_ENV: tf_config})
    assert "\n" not in str(raised.value)


def test_the_chief_is_tensorflows():
    assert not read_tf_config({TF_CONFIG_ENV: json.dumps(GOOD)}).is_chief
    zero = {**GOOD, "task": {"type": "worker", "index": 0}}
    assert read_tf_config({TF_CONFIG_ENV: json.dumps(zero)}).is_chief
    chief = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "chief"}}
    assert read_tf_config({TF_CONFIG_ENV: json.dumps(chief)}).is_chief
    assert not read_tf_config({TF_CONFIG_ENV: json.dumps({**chief, "task": zero["task"]})}).is_chief


def test_workers_agree_on_the_run_without_talking(tmp_path, monkeypatch, synthetic_small):
    """The chief's folder is the run folder; the other's is its own, found again on restart."""
    monkeypatch.setenv(WORKER_DIR_ENV, str(tmp_path / "workers"))
    config = make_config(str(synthetic_small), "cnn_custom", out=str(tmp_path / "runs"))
    chief = read_tf_config({TF_CONFIG_ENV: json.dumps({**GOOD, "task": {"type": "worker"}})})
    other = read_tf_config({TF_CONFIG_ENV: json.dumps(GOOD)})
    name = run_name(config, chief)
    assert name == run_name(config, other)
    assert name != run_name(make_config(str(synthetic_small), "cnn_custom", lr=0.01), chief)
    (run, resume) = worker_run(config, chief)
    assert run.path == tmp_path / "runs" / name and not resume
    (mine, _) = worker_run(config, other)
    assert mine.path == tmp_path / "workers" / f"{name}-worker1"
    run.set_status(state="completed")
    with pytest.raises(ValueError, match="give every worker a new --run-name"):
        worker_run(config, chief)
    (named, _) = worker_run(config, chief, "second-try")
    assert named.id == "second-try"
    with pytest.raises(ValueError, match="must be letters"):
        worker_run(config, chief, "../elsewhere")


def test_the_cli_refuses_a_missing_tf_config_in_one_line(tmp_path, synthetic_small):
    env = {k: v for k, v in os.environ.items() if k != TF_CONFIG_ENV}
    argv = [sys.executable, "-m", "portrait_core", "train", "--data", str(synthetic_small),
            "--distribute", "multiworker", "--out", str(tmp_path / "runs")]  # fmt: skip
    done = subprocess.run(argv, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()  # before TensorFlow: its logging too
    assert line.startswith("error: --distribute multiworker needs TF_CONFIG")
    assert not (tmp_path / "runs").exists()


EQUAL_STEPS = """
import json, sys, numpy as np
from portrait_core.training.distribute import strategy_for
scope, replicas = strategy_for("multiworker")  # before TensorFlow's runtime starts
import keras
from portrait_core.models import create_model
from portrait_core.pipeline import InputPipeline, SplitData
from portrait_core.training.metrics import losses_and_metrics
from portrait_core.training.workers import read_tf_config
HEADS = ("gender", "hairstyle")
table = json.load(open(sys.argv[1]))
train = SplitData(np.array(table["paths"]), {h: np.array(table[h]) for h in HEADS})
# what train.py builds: whole global batches, the labelled mean folded into the weights, sharded
# by DATA under the strategy; no augmentation (its random streams are not what is compared)
pipeline = InputPipeline(train=train, val=train, test=train, image_size=32, batch_size=8,
                         seed=0, augment=False, drop_remainder=True)
pipeline.mean_image()

def trained(scope, seed, alone=False):
    keras.utils.set_random_seed(seed)
    with scope():
        m = create_model("cnn_custom", 32, HEADS)
        start = [v.numpy() for v in m.trainable_weights]
        losses, metrics = losses_and_metrics(HEADS)
        # plain SGD: an update proportional to the gradient, so rounding stays rounding
        m.compile(optimizer=keras.optimizers.SGD(0.01), loss=losses, metrics=metrics)
    data = pipeline.train_dataset().take(3)
    if alone:  # Keras' fit under a strategy reads one batch first to build (trainer.py,
        next(iter(data))  # _maybe_symbolic_build): the shuffle then starts one order on
    m.fit(data, epochs=2, verbose=0)
    return start, [v.numpy() for v in m.trainable_weights]

def apart(a, b):
    return max(float(np.abs(p - q).max()) for p, q in zip(a, b))

start, two = trained(scope, 1)
if read_tf_config().is_chief:  # then, alone, without the strategy
    import contextlib
    _, one = trained(contextlib.nullcontext, 1, alone=True)
    _, other_seed = trained(contextlib.nullcontext, 2, alone=True)
    print("RESULT", json.dumps({"replicas": replicas, "update": apart(one, start),
        "diff": apart(two, one), "diff_other_seed": apart(other_seed, one)}))
"""


def test_two_workers_take_the_steps_one_process_takes(tmp_path, make_pictures):
    """2 workers x 3 steps x 2 epochs of 8 pictures (4 per worker), missing labels unevenly
    spread, end where one process ends. Bound relative to the update, as the mirrored test's."""
    from portrait_core.data.table import label_codes

    data = make_pictures(48, seed=5, size=32, missing=0.3)
    table = {"paths": [str(p) for p in data.table["path"]]}
    table |= {h: label_codes(data.table, h).tolist() for h in ("gender", "hairstyle")}
    (tmp_path / "table.json").write_text(json.dumps(table))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = run_workers([sys.executable, "-c", EQUAL_STEPS, str(tmp_path / "table.json")], env)
    assert all(d.returncode == 0 for d in done), [d.stderr[-2000:] for d in done]
    result = json.loads(done[0].stdout.split("RESULT", 1)[1])
    assert result["replicas"] == 2
    assert result["update"] > 1e-3, result  # the weights really moved
    assert result["diff"] < 1e-3 * result["update"], result
    assert result["diff_other_seed"] > 1e-1 * result["update"], result  # the check can fail


def train_argv(data: Path, out: Path, name: str, epochs: int) -> list[str]:
    return [
        sys.executable, "-m", "portrait_core", "train", "--data", str(data),
        "--model", "cnn_custom", "--attributes", "gender,hairstyle", "--image-size", "32",
        "--epochs", str(epochs), "--batch-size", "8", "--max-steps", "3", "--no-augment",
        "--distribute", "multiworker", "--run-name", name, "--out", str(out),
    ]  # fmt: skip


def start_workers(argv: list[str], env: dict, configs: list[str], logs: Path) -> list:
    """One worker per TF_CONFIG, its output in a file under `logs` (a pipe nobody reads while
    the workers run would fill and stop them)."""
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, config in enumerate(configs):
        with open(logs / f"worker{i}.log", "w") as out:
            procs.append(subprocess.Popen(argv, cwd=PROJECT, env={**env, TF_CONFIG_ENV: config},
                                          stdout=out, stderr=subprocess.STDOUT))  # fmt: skip
    return procs


def log_tails(logs: Path) -> dict[str, str]:
    return {p.name: p.read_text(errors="replace")[-2000:] for p in sorted(logs.glob("*.log"))}


def status_of(folder: Path) -> dict:
    try:
        return json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_all(procs: list, timeout: float) -> list[int | None]:
    """Each process's exit status; None for one still running `timeout` s after the call."""
    deadline, codes = time.monotonic() + timeout, []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    return codes


def end_all(procs: list) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_a_killed_worker_is_restarted_and_the_run_resumes(tmp_path, synthetic_small):
    """Worker 1 SIGKILLed as its epoch 2 of 3 begins, the chief left to the strategy, then both
    started again with their first command: the run resumes from epoch 1 in the same folder,
    completes with each epoch once, and only the chief's run folder is left."""
    runs, workers = tmp_path / "runs", tmp_path / "workers"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", WORKER_DIR_ENV: str(workers)}
    argv = train_argv(synthetic_small, runs, "restarted", epochs=3)
    configs = tf_configs()  # the same again at the restart, as a cluster manager would
    chief_folder, other_folder = runs / "restarted", workers / "restarted-worker1"
    procs = start_workers(argv, env, configs, tmp_path / "first")
    try:
        deadline = time.monotonic() + 240
        # written as worker 1's epoch 2 begins, after its backup of epoch 1
        while status_of(other_folder).get("epoch") != 2:
            ended = [p.poll() for p in procs]
            assert ended == [None, None] and time.monotonic() < deadline, (
                ended, log_tails(tmp_path / "first"))  # fmt: skip
            time.sleep(0.05)
        os.kill(procs[1].pid, signal.SIGKILL)
        procs[1].wait()
        killed = time.monotonic()
        # The chief, left alone: its next collective fails once TensorFlow's coordination
        # service misses the dead worker's heartbeats (measured: UnavailableError "The following
        # tasks are unhealthy (stopped sending heartbeats)", the process gone 12 s after the
        # kill on 2 loaded cores), so it stops by itself, with an error. Were it still running
        # after a minute, it would be killed too, as Kubernetes or Slurm restart a whole job.
        try:
            chief_code = procs[0].wait(timeout=60)
        except subprocess.TimeoutExpired:
            chief_code = None
            end_all(procs)
        chief_stopped_after = time.monotonic() - killed
        before = Run(chief_folder)
        first_history, created = before.history, before.status["created"]
        assert before.backed_up_epoch == Run(other_folder).backed_up_epoch == 1

        procs = start_workers(argv, env, configs, tmp_path / "again")
        codes = wait_all(procs, 240)
        assert codes == [0, 0], log_tails(tmp_path / "again")
    finally:
        end_all(procs)
    assert chief_code not in (None, 0), (
        chief_code, round(chief_stopped_after, 1), log_tails(tmp_path / "first"))  # fmt: skip
    chief_log = (tmp_path / "first" / "worker0.log").read_text(errors="replace")
    assert chief_code == 1 and "error: another worker stopped" in chief_log, chief_log[-2000:]
    assert "Traceback" not in chief_log  # one line says what to do, not TensorFlow's stack
    (run,) = RunStore(runs).list()
    assert run.path == chief_folder and run.status["created"] == created  # the same folder
    assert run.state == "completed" and run.status["resumed"] == 1
    assert run.config["distribution"]["strategy"] == "multiworker"
    assert run.config["distribution"]["replicas"] == 2
    assert [h["epoch"] for h in first_history] == [1]
    assert [h["epoch"] for h in run.history] == [1, 2, 3]  # each once
    assert run.history[0] == first_history[0]
    assert np.isfinite(run.history[-1]["val_loss"])
    assert run.metrics["resumed_from_epoch"] == 1 and run.metrics["epochs_run"] == 3
    assert run.metrics["attributes"]["gender"]["n"] > 0
    assert not (run.path / "backup").exists()
    assert list(workers.iterdir()) == []  # the other worker's folder is gone


TWO = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}


def test_workers_that_backed_up_different_epochs_are_named():
    chief = read_tf_config({TF_CONFIG_ENV: json.dumps(TWO)})
    assert chief.tasks == ["worker0", "worker1"] and chief.position == 0
    other = read_tf_config({TF_CONFIG_ENV: json.dumps({**TWO, "task": {"type": "worker",
                                                                      "index": 1}})})  # fmt: skip
    assert other.position == 1
    folder = Path("/runs/named")
    assert epoch_mismatch(chief, {0: 2, 1: 2}, folder, "/runs") is None
    assert epoch_mismatch(chief, {0: 0, 1: 0}, folder, "/runs") is None  # a fresh start
    line = epoch_mismatch(other, {1: 1, 0: 2}, Path("/tmp/w/named-worker1"), "/runs")
    assert "run named backed up different epochs (worker0: epoch 2, worker1: epoch 1)" in line
    assert "new --run-name" in line and "/runs/named on the chief" in line
    assert "\n" not in line
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]},
                  "task": {"type": "worker", "index": 1}}  # fmt: skip
    third = read_tf_config({TF_CONFIG_ENV: json.dumps(with_chief)})
    assert third.tasks == ["chief0", "worker0", "worker1"] and third.position == 2
    line = epoch_mismatch(third, {0: 3, 1: 3, 2: 0}, folder, "/runs")
    assert "(chief0: epoch 3, worker0: epoch 3, worker1: no backup)" in line


def test_workers_whose_backups_disagree_stop_in_one_line(tmp_path, synthetic_small):
    """The chief's backup holds epoch 2, worker 1's epoch 1 (killed while it backed up): both
    stop before reading any data, each with the same line."""
    runs, workers = tmp_path / "runs", tmp_path / "workers"
    for folder, epoch in ((runs / "mixed", 2), (workers / "mixed-worker1", 1)):
        run = RunStore(folder.parent).create("cnn_custom", ["gender", "hairstyle"],
                                             run_id=folder.name)  # fmt: skip
        run.set_status(state="failed")
        (folder / "backup").mkdir()
        (folder / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": epoch}))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", WORKER_DIR_ENV: str(workers)}
    argv = train_argv(synthetic_small, runs, "mixed", epochs=3)
    procs = start_workers(argv, env, tf_configs(), tmp_path / "logs")
    try:
        codes = wait_all(procs, 180)
    finally:
        end_all(procs)
    assert codes == [2, 2], log_tails(tmp_path / "logs")
    expected = (
        "workers of run mixed backed up different epochs (worker0: epoch 2, worker1: epoch 1)"
    )
    for log in sorted((tmp_path / "logs").glob("*.log")):
        (line,) = [x for x in log.read_text().splitlines() if x.startswith("error:")]
        assert expected in line
    assert Run(runs / "mixed").state == "failed"
    assert expected in Run(runs / "mixed").status["error"]
    assert not (runs / "mixed" / "split.csv").exists()  # stopped before the data was read
