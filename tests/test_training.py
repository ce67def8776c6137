"""Training runs: every file of the run folder, graceful stop, crash handling, publishing."""

from __future__ import annotations

import json
import time

import keras
import numpy as np
import pytest

from portrait_core.models.layers import load_saved_model
from portrait_core.schema import SCHEMA_VERSION
from portrait_core.training import callbacks
from portrait_core.training.config import TrainConfig, make_config
from portrait_core.training.launch import launch_training
from portrait_core.training.publish import publish
from portrait_core.training.runs import RunStore
from portrait_core.training.train import run_training


def test_a_run_folder_describes_itself(trained_run):
    files = {p.name for p in trained_run.path.iterdir()}
    assert {
        "config.json",
        "history.jsonl",
        "status.json",
        "model.keras",
        "metrics.json",
        "mean_image.npy",
        "tensorboard",
    } <= files
    assert not [f for f in files if f.endswith(".tmp") or ".tmp." in f]
    config = trained_run.config
    assert config["schema_version"] == SCHEMA_VERSION
    assert config["preprocessing"]["image_size"] == 48
    assert (
        config["data"]["split_file"]
        and sum(config["data"]["split_sizes"].values()) == config["data"]["n_images"]
    )
    assert TrainConfig.from_dict(config["train"]).model == "cnn_custom"  # reproducible from it
    split = (trained_run.path / config["data"]["split_copy"]).read_text().splitlines()
    assert split[0] == "path,split" and len(split) - 1 == config["data"]["n_images"]
    history = trained_run.history
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"loss", "val_loss", "gender_accuracy", "val_hairstyle_loss", "learning_rate"} <= set(
        history[0]
    )
    status = trained_run.status
    assert status["state"] == "completed" and status["epoch"] == 2
    metrics = trained_run.metrics
    assert set(metrics["attributes"]) == {"gender", "age", "face_shape", "hairstyle"}
    assert metrics["params"] > 0 and metrics["ms_per_image"] > 0 and metrics["train_seconds"] > 0
    assert any((trained_run.path / "tensorboard").rglob("*tfevents*"))
    model = keras.models.load_model(trained_run.model_file, safe_mode=True)
    assert sorted(model.output_names) == ["age", "face_shape", "gender", "hairstyle"]


def test_config_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ValueError, match="unknown config key colour"):
        TrainConfig.from_dict({"data": "x", "colour": "red"})
    with pytest.raises(ValueError, match="epochs should be int"):
        TrainConfig.from_dict({"data": "x", "epochs": "ten"})
    with pytest.raises(ValueError, match="unknown attribute"):
        make_config("x", "cnn_custom", attributes="gender,beard")
    with pytest.raises(ValueError, match="balance attribute"):
        make_config("x", "cnn_custom", attributes="gender", balance="hairstyle")


def test_study_preset_fills_the_studys_settings_and_user_values_win():
    study = make_config("x", "cnn_custom", preset="study")
    assert (study.batch_size, study.epochs, study.early_stop_patience, study.lr_factor) == (
        125,
        30,
        3,
        0.2,
    )
    assert study.options["pooling"] == "flatten"
    assert make_config("x", "cnn_custom", preset="study", epochs=2).epochs == 2


def test_a_crash_marks_the_run_failed_and_leaves_no_half_files(
    synthetic_small, tmp_path, monkeypatch
):
    def explode(self, epoch, logs=None):
        raise RuntimeError("disk full")

    monkeypatch.setattr(callbacks.RunRecorder, "on_epoch_end", explode)
    config = make_config(
        str(synthetic_small),
        "cnn_custom",
        image_size=48,
        epochs=3,
        batch_size=16,
        out=str(tmp_path),
        max_steps_per_epoch=2,
    )
    with pytest.raises(RuntimeError, match="disk full"):
        run_training(config)
    (run,) = RunStore(tmp_path).list()
    assert run.status["state"] == "failed" and "disk full" in run.status["error"]
    assert run.metrics is None
    assert not [p for p in run.path.iterdir() if ".tmp" in p.name]


def test_stop_ends_a_running_run_gracefully(synthetic_small, tmp_path):
    config = make_config(
        str(synthetic_small),
        "cnn_custom",
        image_size=48,
        epochs=200,
        batch_size=8,
        out=str(tmp_path),
    )
    run = launch_training(config)  # a separate process, as the app starts it
    assert run.status["state"] in ("queued", "running")
    deadline = time.time() + 120
    while time.time() < deadline and len(run.history) < 1:
        time.sleep(0.5)
    assert run.history, f"no epoch finished: {run.status}"
    run.request_stop()
    while time.time() < deadline and run.status["state"] == "running":
        time.sleep(0.5)
    assert run.status["state"] == "cancelled"
    assert len(run.history) < 200
    assert run.model_file.exists()  # the best model so far is kept
    load_saved_model(run.model_file)  # safe mode, with the project's layers registered
    assert not [p for p in run.path.iterdir() if ".tmp" in p.name]


def test_stop_from_the_cli(synthetic_small, tmp_path):
    from portrait_core.cli import main

    store = RunStore(tmp_path)
    run = store.create("cnn_custom", ("gender",))
    assert main(["stop", run.id, "--out", str(tmp_path)]) == 0
    assert run.stop_requested and run.status["state"] == "cancelled"
    assert main(["stop", "no-such-run", "--out", str(tmp_path)]) == 2


def test_publish_writes_a_model_folder_with_a_card(trained_run, tmp_path):
    dest = publish(trained_run, tmp_path / "default")
    assert {"model.keras", "config.json", "metrics.json", "MODEL_CARD.md"} <= {
        p.name for p in dest.iterdir()
    }
    card = (dest / "MODEL_CARD.md").read_text()
    assert "synthetic" in card and "not good for" in card
    gender = json.loads((dest / "metrics.json").read_text())["attributes"]["gender"]
    assert f"{gender['accuracy']:.3f}" in card
    augment = "on" if trained_run.config["train"]["augment"] else "off"
    assert f"augmentation {augment}" in card
    assert f"--n {trained_run.config['data']['n_images']} " in card
    # the published model is the run's best, without the optimizer's slots
    published = keras.models.load_model(dest / "model.keras", safe_mode=True)
    trained = keras.models.load_model(trained_run.model_file, safe_mode=True)
    assert getattr(published, "optimizer", None) is None and trained.optimizer is not None
    assert (dest / "model.keras").stat().st_size < trained_run.model_file.stat().st_size
    x = np.random.default_rng(0).uniform(0, 255, (2, *published.input_shape[1:])).astype("float32")
    for attr, probs in published.predict(x, verbose=0).items():
        np.testing.assert_allclose(probs, trained.predict(x, verbose=0)[attr], atol=1e-6)


def test_sigterm_before_training_starts_cancels_the_run(synthetic_small, tmp_path, monkeypatch):
    """SIGTERM while the data is being prepared (outside fit) still ends the run cleanly."""
    import os
    import signal

    from portrait_core.training import train

    def slow_preparation(config):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        raise AssertionError("SIGTERM was not handled")

    monkeypatch.setattr(train, "prepare_data", slow_preparation)
    before = signal.getsignal(signal.SIGTERM)
    config = make_config(
        str(synthetic_small), "cnn_custom", image_size=48, epochs=1, out=str(tmp_path)
    )
    started = time.time()
    run = run_training(config)
    assert time.time() - started < 4
    assert run.status["state"] == "cancelled"
    assert not run.model_file.exists() and run.metrics is None
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


def test_evaluate_command_on_the_runs_split_and_on_another_data_set(
    trained_run, synthetic_small, tmp_path, capsys
):
    import shutil

    from portrait_core.cli import main
    from portrait_core.synth import generate

    # on a copy: evaluate rewrites the run's metrics.json, which other test files read as
    # training left it (test_faithfulness.py), in whatever order xdist runs them
    shutil.copytree(trained_run.path, tmp_path / "runs" / trained_run.id)
    runs = str(tmp_path / "runs")
    assert main(["evaluate", trained_run.id, "--out", runs]) == 0
    own = json.loads(capsys.readouterr().out)
    assert own["split"] == "test"
    recorded = trained_run.metrics
    for attr, m in own["attributes"].items():  # the same best model on the same split
        assert m["accuracy"] == pytest.approx(recorded["attributes"][attr]["accuracy"])
        assert m["n"] == recorded["attributes"][attr]["n"]
    assert own["train_seconds"] == recorded["train_seconds"] and own["params"] > 0
    assert own["ms_per_image"] > 0

    other = tmp_path / "other"
    generate(other, 40, seed=99, size=48, progress=False, workers=1)
    assert main(["evaluate", trained_run.id, "--out", runs, "--data", str(other)]) == 0
    theirs = json.loads(capsys.readouterr().out)
    assert theirs["split"] == "all" and theirs["data"] == str(other.resolve())
    gender = theirs["attributes"]["gender"]
    assert sum(map(sum, gender["confusion_matrix"])) == gender["n"] >= 30
    assert main(["evaluate", "no-such-run", "--out", runs]) == 2


def test_train_command_line_flags_reach_the_run(synthetic_small, tmp_path, capsys):
    """The study's one-model-per-attribute set-up, trained from the command line."""
    from portrait_core.cli import main

    argv = [
        "train", "--data", str(synthetic_small), "--model", "cnn_custom",
        "--attributes", "hairstyle", "--image-size", "40", "--epochs", "2", "--batch-size", "8",
        "--lr", "0.002", "--pooling", "gap", "--balance", "hairstyle:12", "--no-augment",
        "--no-class-weights", "--seed", "5", "--max-steps", "3", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 0
    assert "completed" in capsys.readouterr().err
    (run,) = RunStore(tmp_path).list()
    train = run.config["train"]
    assert train["attributes"] == ["hairstyle"] and train["model"] == "cnn_custom"
    assert (train["image_size"], train["epochs"], train["batch_size"]) == (40, 2, 8)
    assert train["lr"] == 0.002 and train["seed"] == 5 and train["max_steps_per_epoch"] == 3
    assert train["options"]["pooling"] == "gap" and train["balance"] == "hairstyle:12"
    assert train["augment"] is False and train["class_weights"] is False
    assert run.config["preprocessing"]["image_size"] == 40
    assert list(run.metrics["attributes"]) == ["hairstyle"] and len(run.history) == 2
    assert [h["epoch"] for h in run.history] == [1, 2]
    model = keras.models.load_model(run.model_file, safe_mode=True)
    assert model.output_names == ["hairstyle"] and model.input_shape[1:] == (40, 40, 3)


def test_resnet50_without_imagenet_weights_fails_before_loading_data(
    synthetic_small, tmp_path, monkeypatch, capsys
):
    import portrait_core.models.resnet50 as r
    from portrait_core.cli import main
    from portrait_core.training import train

    monkeypatch.setattr(r, "keras_cache_file", lambda: tmp_path / r.WEIGHTS_FILE)
    monkeypatch.setattr(r, "_host_reachable", lambda: False)

    def no_data(config):
        raise AssertionError("the data were loaded before the weights were checked")

    monkeypatch.setattr(train, "prepare_data", no_data)
    argv = ["train", "--data", str(synthetic_small), "--model", "resnet50", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--weights none" in err[0] and "Traceback" not in err[0], err
    (run,) = RunStore(tmp_path).list()
    assert run.status["state"] == "failed" and "ImageNet weights" in run.status["error"]


def test_mirrored_training_runs_one_model_copy_per_device(tmp_path):
    """--distribute mirrored through TensorFlow's MirroredStrategy, here over two logical CPUs
    (a fresh process: TensorFlow's devices are fixed once its runtime starts). 72 pictures split
    51 / 11 / 10: batches of 8 leave a partial last batch in training and in validation, which
    MirroredStrategy split unevenly and failed on until whole batches were used."""
    import os
    import subprocess
    import sys

    from portrait_core import load_predictor
    from portrait_core.paths import PROJECT
    from portrait_core.synth import generate
    from portrait_core.training.distribute import CPU_REPLICAS_ENV

    data = tmp_path / "data"
    generate(data, 72, seed=0, size=40, progress=False, workers=1)
    argv = [
        sys.executable, "-m", "portrait_core", "train", "--data", str(data),
        "--attributes", "gender,hairstyle", "--image-size", "40", "--epochs", "2",
        "--batch-size", "8", "--distribute", "mirrored", "--out", str(tmp_path / "runs"),
    ]  # fmt: skip
    env = {**os.environ, CPU_REPLICAS_ENV: "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(argv, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = RunStore(tmp_path / "runs").list()
    assert run.config["data"]["split_sizes"] == {"train": 51, "val": 11, "test": 10}
    assert run.config["distribution"] == {
        "strategy": "mirrored",
        "replicas": 2,
        "val_pictures_used": 8,
    }
    assert run.status["state"] == "completed" and len(run.history) == 2
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["val_loss"]) for h in run.history)
    assert run.metrics["attributes"]["gender"]["n"] == 10  # the test split is scored whole
    predicted = load_predictor(run.path).predict(data / "1.png")
    assert set(predicted) == {"gender", "hairstyle"}

    # a batch that cannot be split evenly between the replicas is refused, in one line
    odd = [*argv[: argv.index("--batch-size") + 1], "7", *argv[argv.index("--batch-size") + 2 :]]
    done = subprocess.run(odd, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: batch size 7 must be a multiple")


def test_distribute_is_checked_before_a_run_starts(synthetic_small):
    with pytest.raises(ValueError, match="distribute must be one of none, mirrored"):
        make_config(str(synthetic_small), "cnn_custom", distribute="everywhere")


EQUAL_STEPS = """
import json, numpy as np, keras, tensorflow as tf
from portrait_core.models import create_model
from portrait_core.pipeline import labelled_mean_weights
from portrait_core.training.distribute import strategy_for
from portrait_core.training.metrics import losses_and_metrics
HEADS = ("gender", "hairstyle")
strategy_for("mirrored")  # splits the CPU in two: before TensorFlow's runtime starts
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (16, 40, 40, 3)).astype("float32")
y = {"gender": rng.integers(0, 2, 16), "hairstyle": rng.integers(0, 5, 16)}
# Missing labels in every head, unevenly between the halves of each batch of 8 (the replicas'
# shares): gender misses 3 of one half and none of the other, hairstyle 1 and 2.
for head, missing in (("gender", [0, 1, 2, 8, 9, 10]), ("hairstyle", [5, 2, 3, 12, 13, 14])):
    y[head][missing] = -1
w = {k: np.where(v >= 0, rng.uniform(0.5, 2, 16), 0).astype("float32") for k, v in y.items()}
data = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(8).map(labelled_mean_weights)

def trained(name, losses=None):
    scope, replicas = strategy_for(name)
    keras.utils.set_random_seed(1)
    with scope():
        m = create_model("cnn_custom", 40, HEADS)
        start = [v.numpy() for v in m.trainable_weights]
        ours, metrics = losses_and_metrics(HEADS)
        # plain SGD: an update proportional to the gradient, so rounding stays rounding (Adam
        # turns a near-zero gradient's rounding into a step of about the learning rate)
        m.compile(optimizer=keras.optimizers.SGD(0.01), loss=losses or ours, metrics=metrics)
    m.fit(data, epochs=2, verbose=0)
    return replicas, start, [v.numpy() for v in m.trainable_weights]

def apart(a, b):
    return max(float(np.abs(p - q).max()) for p, q in zip(a, b))

r2, start, two = trained("mirrored")
r1, _, one = trained("none")
# Keras' own ignore_class loss: each replica averages over its own labelled pictures
local = {h: keras.losses.SparseCategoricalCrossentropy(ignore_class=-1) for h in HEADS}
_, _, two_local = trained("mirrored", local)
print("RESULT", json.dumps({"replicas": [r2, r1], "update": apart(one, start),
    "diff": apart(two, one), "diff_local": apart(two_local, one)}))
"""


def test_mirrored_steps_equal_single_device_steps(tmp_path):
    """Two replicas, each on half of every batch, end with the weights one device reaches after
    4 steps with per-sample weights and missing labels in every head, spread unevenly between
    the replicas. The loss is each head's mean over the labelled pictures of the *global* batch
    (pipeline.labelled_mean_weights). Keras' ignore_class loss, which averages per replica, is
    run beside it to show the check can tell the two apart.

    The bound is relative to how far the weights moved: plain SGD keeps a difference in
    summation order (oneDNN kernels, AVX-512 or not, threads) at rounding level of the update,
    while the per-replica average moves the weights by a share of the update itself."""
    import json
    import os
    import subprocess
    import sys

    from portrait_core.paths import PROJECT
    from portrait_core.training.distribute import CPU_REPLICAS_ENV

    env = {**os.environ, CPU_REPLICAS_ENV: "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", EQUAL_STEPS], cwd=PROJECT, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.split("RESULT", 1)[1])
    assert result["replicas"] == [2, 1]
    assert result["update"] > 1e-3, result  # the weights really moved
    assert result["diff"] < 1e-3 * result["update"], result
    assert result["diff_local"] > 1e-2 * result["update"], result
