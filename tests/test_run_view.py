"""portrait_core.run_view on hand-made run-folder contents: curves, progress, metrics, catalogue."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from portrait_core import leaderboard, paths
from portrait_core import run_view as rv
from portrait_core.training.runs import RunStore


def epoch(n: int, seconds: float, **values) -> dict:
    return {"epoch": n, "seconds": seconds, "learning_rate": 0.001, **values}


TWO_HEADS = [
    epoch(
        1,
        9.0,
        loss=2.0,
        gender_loss=0.7,
        face_shape_loss=1.3,
        gender_accuracy=0.5,
        face_shape_accuracy=0.2,
        val_loss=2.1,
        val_gender_loss=0.8,
        val_face_shape_loss=1.3,
        val_gender_accuracy=0.4,
        val_face_shape_accuracy=0.25,
    ),
    epoch(
        2,
        3.0,
        loss=1.5,
        gender_loss=0.5,
        face_shape_loss=1.0,
        gender_accuracy=0.7,
        face_shape_accuracy=0.4,
        val_loss=None,  # a non-finite value is logged as null
        val_gender_loss=0.6,
        val_face_shape_loss=1.1,
        val_gender_accuracy=0.6,
        val_face_shape_accuracy=0.35,
    ),
]


def test_curves_frame_splits_keys_into_head_metric_and_split():
    frame = rv.curves_frame(TWO_HEADS, ["gender", "face_shape"])
    assert list(frame.columns) == ["epoch", "head", "metric", "split", "value"]
    assert set(frame["head"]) == {"gender", "face_shape", rv.TOTAL}
    assert set(frame["metric"]) == {"loss", "accuracy"}
    pick = frame.set_index(["epoch", "head", "metric", "split"])["value"]
    assert pick[(2, "face_shape", "accuracy", "val")] == 0.35  # underscore in the head's name
    assert pick[(1, "gender", "loss", "train")] == 0.7
    assert pick[(1, rv.TOTAL, "loss", "val")] == 2.1
    assert (2, rv.TOTAL, "loss", "val") not in pick.index  # the null is left out
    assert "learning_rate" not in set(frame["metric"]) and "seconds" not in set(frame["metric"])
    # every (head, metric, split) curve is in epoch order
    for _, part in frame.groupby(["head", "metric", "split"]):
        assert part["epoch"].is_monotonic_increasing


def test_curves_frame_gives_a_one_head_models_bare_keys_to_that_head():
    history = [epoch(1, 2.0, loss=0.7, accuracy=0.5, val_loss=0.8, val_accuracy=0.4)]
    frame = rv.curves_frame(history, ["hairstyle"])
    assert set(frame["head"]) == {"hairstyle"}
    assert len(frame) == 4


def test_curves_frame_guesses_heads_and_handles_no_history():
    frame = rv.curves_frame(TWO_HEADS)
    assert {"gender", "face_shape"} <= set(frame["head"])
    assert rv.curves_frame([]).empty


def test_curve_keys_put_val_loss_first_and_overlay_frame_skips_gaps():
    keys = rv.curve_keys([TWO_HEADS])
    assert keys[0] == "val_loss"
    assert keys.index("val_gender_accuracy") < keys.index("gender_accuracy")
    assert "epoch" not in keys and "learning_rate" not in keys
    frame = rv.overlay_frame({"a": TWO_HEADS, "b": TWO_HEADS[:1]}, "val_loss")
    assert frame.to_dict("records") == [
        {"run": "a", "epoch": 1, "value": 2.1},
        {"run": "b", "epoch": 1, "value": 2.1},
    ]


def running(epoch_: int, batch: int, **more) -> dict:
    return {
        "state": "running",
        "epoch": epoch_,
        "epochs": 10,
        "batch": batch,
        "steps": 8,
        "started": 1000.0,
        **more,
    }


def test_progress_mid_epoch_estimates_time_left_from_recent_epochs():
    history = [epoch(1, 30.0), epoch(2, 10.0), epoch(3, 12.0)]
    p = rv.progress(running(4, 2), history, now=1100.0)
    assert p["epoch"] == 4 and p["epochs"] == 10
    assert p["fraction"] == pytest.approx(0.25)
    assert p["overall"] == pytest.approx(3.25 / 10)
    assert p["elapsed_s"] == pytest.approx(100.0)
    # the first (slow) epoch is left out: 11 s an epoch, 6.75 epochs to go
    assert p["eta_s"] == pytest.approx(6.75 * 11.0)


def test_progress_before_the_first_epoch_ends_has_no_estimate():
    p = rv.progress(running(1, 3), [], now=1010.0)
    assert p["fraction"] == pytest.approx(3 / 8)
    assert p["eta_s"] is None and p["elapsed_s"] == pytest.approx(10.0)
    queued = rv.progress({"state": "queued", "epoch": 0, "batch": 0, "created": 1000.0}, [], 1005)
    assert queued["fraction"] == 0.0 and queued["eta_s"] is None and queued["epochs"] == 0


def test_progress_of_a_finished_run_is_complete_and_stops_the_clock():
    status = running(3, 8, state="cancelled", finished=1060.0)
    p = rv.progress(status, [epoch(1, 20.0), epoch(2, 20.0)], now=5000.0)
    assert p["fraction"] == 1.0 and p["overall"] == 1.0
    assert p["elapsed_s"] == pytest.approx(60.0)
    assert p["eta_s"] is None


@pytest.mark.parametrize(
    "seconds, text",
    [(None, "–"), (0.4, "0 s"), (42, "42 s"), (185, "3 min 05 s"), (7384, "2 h 03 min")],
)
def test_format_duration(seconds, text):
    assert rv.format_duration(seconds) == text


def head_metrics(n: int, accuracy: float, matrix: list[list[int]], classes: list[str]) -> dict:
    return {
        "n": n,
        "accuracy": accuracy,
        "balanced_accuracy": accuracy - 0.1,
        "macro_f1": accuracy - 0.2,
        "per_class": {
            c: {"precision": 0.5, "recall": 0.25 * (i + 1), "f1": 0.3, "support": sum(matrix[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": matrix,
        "majority_class": classes[0],
        "majority_baseline": {"accuracy": 0.55, "balanced_accuracy": 0.5},
    }


METRICS = {
    "attributes": {
        # written in another order than the schema's: the table follows the schema
        "gender": head_metrics(10, 0.8, [[5, 1], [1, 3]], ["male", "female"]),
        "age": {"n": 0, "note": "no labelled rows for this attribute in the evaluated split"},
    },
    "train_seconds": 12.5,
}


def test_metrics_table_has_one_row_per_scored_attribute():
    table = rv.metrics_table(METRICS)
    assert table["attribute"].tolist() == ["Gender"]  # age had no labelled test row
    row = table.iloc[0]
    assert (row["accuracy"], row["majority_baseline"], row["n_test"]) == (0.8, 0.55, 10)
    assert row["balanced_accuracy"] == pytest.approx(0.7)
    assert rv.metrics_table(None).empty and "macro_f1" in rv.metrics_table(None).columns
    assert rv.scored_attributes(METRICS) == ["gender"]


def test_confusion_and_per_class_frames_are_labelled_with_the_schemas_classes():
    grid = rv.confusion_frame(METRICS, "gender")
    assert list(grid.index) == ["male", "female"] and list(grid.columns) == ["male", "female"]
    assert grid.loc["male", "female"] == 1 and grid.to_numpy().sum() == 10
    per_class = rv.per_class_frame(METRICS, "gender")
    assert per_class["class"].tolist() == ["male", "female"]
    assert per_class["recall"].tolist() == [0.25, 0.5]
    assert per_class["support"].tolist() == [6, 4]


# --- calibration and robustness ------------------------------------------------------------------
def degraded(balanced: float, drop: float | None, n: int = 10) -> dict:
    entry = {"n": n, "accuracy": balanced + 0.1, "balanced_accuracy": balanced}
    if drop is not None:
        entry |= {"accuracy_drop": drop, "balanced_accuracy_drop": drop}
    return entry


def calibrated(entry: dict, before: float, after: float | None, t: float | None) -> dict:
    return {**entry, "ece_before": before, "ece_after": after, "temperature": t}


# As a run trained since issue 11 writes it: gender calibrated, hairstyle with no temperature
# (too few validation pictures), age unlabelled in the test split.
NEW_METRICS = {
    "attributes": {
        "gender": calibrated(
            head_metrics(10, 0.8, [[5, 1], [1, 3]], ["male", "female"]), 0.12, 0.04, 1.7
        ),
        "hairstyle": calibrated(
            head_metrics(10, 0.6, [[2] * 5] * 5, ["straight", "wavy", "curly", "bald", "other"]),
            0.2,
            None,
            None,
        ),
        "age": {"n": 0, "note": "no labelled rows"},
    },
    "robustness": {
        "split": "test",
        "applied_to": "the photo at the model's input size",
        "n_images": 10,
        "seconds": 4.2,
        "degradations": {
            # stored order, not alphabetical: the table keeps it
            "jpeg_q20": {
                "title": "JPEG quality 20",
                "attributes": {
                    "gender": degraded(0.65, 0.05),  # exactly the flag: not flagged
                    "hairstyle": degraded(0.3, 0.2),
                    "age": {"n": 0},
                },
            },
            "downscale_x4": {
                "title": "down-scaled x4 and back up",
                "attributes": {
                    "gender": degraded(0.5, None),  # no stored drop: clean minus degraded
                    "hairstyle": degraded(0.55, -0.05),  # better than clean: never flagged
                    "age": {"n": 0},
                },
            },
        },
    },
}


def test_calibration_frame_gives_each_runs_error_before_and_after_or_says_it_was_not_measured():
    frame = rv.calibration_frame({"new": NEW_METRICS, "old": METRICS})
    assert list(frame.columns) == [
        "attribute",
        "run",
        "ece_before",
        "ece_after",
        "temperature",
        "calibration",
    ]
    # schema order (gender before hairstyle), runs in the order given; age has no test row
    assert list(zip(frame["attribute"], frame["run"])) == [
        ("Gender", "new"),
        ("Gender", "old"),
        ("Hairstyle", "new"),
    ]
    rows = frame.set_index(["attribute", "run"])
    assert rows.loc[("Gender", "new"), ["ece_before", "ece_after", "temperature"]].tolist() == [
        0.12,
        0.04,
        1.7,
    ]
    assert rows.loc[("Gender", "new"), "calibration"].startswith("temperature-scaled")
    old = rows.loc[("Gender", "old")]
    assert old[["ece_before", "ece_after", "temperature"]].isna().all()
    assert old["calibration"].startswith("not measured")
    hair = rows.loc[("Hairstyle", "new")]
    assert hair["ece_before"] == 0.2 and pd.isna(hair["ece_after"]) and pd.isna(hair["temperature"])
    assert hair["calibration"].startswith("uncalibrated")
    assert rv.calibration_frame({}).empty


def test_robustness_table_for_one_run_has_the_score_and_its_drop_clean_first():
    table, worse = rv.robustness_table({"new": NEW_METRICS}, "gender")
    assert list(table.columns) == ["balanced_accuracy", "drop"]
    assert list(table.index) == [rv.CLEAN, "JPEG quality 20", "down-scaled x4 and back up"]
    assert table["balanced_accuracy"].tolist() == pytest.approx([0.7, 0.65, 0.5])
    assert table["drop"].tolist() == pytest.approx([0.0, 0.05, 0.2])  # the last one computed
    assert worse.shape == table.shape and list(worse.index) == list(table.index)
    assert worse.to_numpy().tolist() == [[False, False], [False, False], [True, True]]

    hair, worse = rv.robustness_table({"new": NEW_METRICS}, "hairstyle")
    assert hair["drop"].tolist() == pytest.approx([0.0, 0.2, -0.05])
    assert worse["drop"].tolist() == [False, True, False]


def test_robustness_table_for_several_runs_has_a_column_each_and_not_measured_as_nan():
    table, worse = rv.robustness_table({"new": NEW_METRICS, "old": METRICS}, "gender")
    assert list(table.columns) == ["new", "old"]
    assert table.loc[rv.CLEAN].tolist() == pytest.approx([0.7, 0.7])
    assert table["new"].tolist() == pytest.approx([0.7, 0.65, 0.5])
    assert table["old"].iloc[1:].isna().all()  # the older run predates the evaluation
    assert worse["new"].tolist() == [False, False, True]
    assert not worse["old"].any()
    # a run that did not score the attribute has no column; none at all: empty
    assert list(rv.robustness_table({"new": NEW_METRICS, "old": METRICS}, "hairstyle")[0]) == [
        "balanced_accuracy",
        "drop",
    ]
    assert rv.robustness_table({"new": NEW_METRICS}, "age")[0].empty
    assert rv.robustness_table({"old": None}, "gender")[0].empty


def test_an_older_or_damaged_robustness_section_reads_as_not_measured():
    assert rv.robustness_measured(NEW_METRICS)
    assert (
        rv.robustness_note(NEW_METRICS)
        == "2 degradations of the 10 pictures of the test split, in 4 s"
    )
    for metrics in (
        METRICS,
        None,
        {**METRICS, "robustness": "garbage"},
        {**METRICS, "robustness": {"degradations": []}},
    ):
        assert not rv.robustness_measured(metrics)
        assert rv.robustness_note(metrics).startswith("not measured")
        table, worse = rv.robustness_table({"run": metrics}, "gender")
        assert list(table.index) == ([rv.CLEAN] if metrics else []) and not worse.any().any()
    broken = {**NEW_METRICS, "robustness": {"degradations": {"jpeg_q20": {"attributes": [1]}}}}
    table, _ = rv.robustness_table({"run": broken}, "gender")
    assert list(table.index) == [rv.CLEAN, "jpeg_q20"] and pd.isna(table.iloc[1, 0])


def test_the_leaderboard_carries_the_calibration_error_or_none(tmp_path):
    store = RunStore(tmp_path)
    for run_id, metrics in (("a-old", METRICS), ("b-new", NEW_METRICS)):
        run = store.create("cnn_custom", ("gender",), run_id=run_id)
        (run.path / "config.json").write_text('{"train": {"model": "cnn_custom"}, "data": {}}')
        (run.path / "metrics.json").write_text(json.dumps(metrics))
    board = leaderboard.leaderboard(tmp_path).set_index(["run", "attribute"])
    assert board.loc[("b-new", "gender"), ["ece_before", "ece_after", "temperature"]].tolist() == [
        0.12,
        0.04,
        1.7,
    ]
    assert board.loc[("b-new", "hairstyle"), ["ece_after", "temperature"]].isna().all()
    assert board.loc[("a-old", "gender"), ["ece_before", "ece_after", "temperature"]].isna().all()


def test_runs_frame_and_request_read_a_queued_run_before_its_config_exists(tmp_path):
    store = RunStore(tmp_path)
    run = store.create("cnn_custom", ("gender", "age"))
    (run.path / "request.json").write_text(
        '{"model": "cnn_custom", "epochs": 7, "attributes": ["gender", "age"]}'
    )
    frame = rv.runs_frame(store.list(), now=run.status["created"] + 1)
    assert frame.loc[0, "state"] == "queued"
    assert frame.loc[0, "epoch"] == "0/7"
    assert frame.loc[0, "attributes"] == "gender, age"
    assert isinstance(frame.loc[0, "started"], pd.Timestamp)
    assert rv.run_attributes(run) == ("gender", "age")
    assert rv.log_tail(run) == ""
    (run.path / "train.log").write_text("".join(f"line {i}\n" for i in range(40)))
    assert rv.log_tail(run, 3) == "line 37\nline 38\nline 39"
    assert frame.loc[0, "problems"] == ""


def test_runs_frame_says_what_is_wrong_with_a_damaged_run_and_only_that_one(tmp_path):
    store = RunStore(tmp_path)
    store.create("cnn_custom", ("gender",), run_id="a-healthy")
    damaged = store.create("cnn_custom", ("gender",), run_id="b-damaged")
    (damaged.path / "status.json").write_text("[]")
    (damaged.path / "config.json").write_text('{"train": ["not", "an", "object"]}')
    (damaged.path / "request.json").write_bytes(b"\xff\xfe garbage")
    frame = rv.runs_frame(store.list()).set_index("run")
    assert frame.loc["a-healthy", "problems"] == ""
    assert frame.loc["a-healthy", "state"] == "queued"
    assert frame.loc["b-damaged", "state"] == "unknown"
    assert frame.loc["b-damaged", "problems"] == (
        "status.json holds a list, not a JSON object; "
        "request.json is not valid JSON (it is not UTF-8 text)"
    )
    assert rv.run_request(damaged) == {}  # config.json's "train" is no object, request.json none
    assert list(rv.damaged_runs(store.list())) == ["b-damaged"]


def test_best_epoch_is_the_one_with_the_lowest_finite_val_loss():
    assert rv.best_epoch(TWO_HEADS) == 1  # epoch 2's val_loss is null
    nan = float("nan")
    history = [
        epoch(1, 1.0, val_loss=0.5),
        epoch(2, 1.0, val_loss=0.4),
        epoch(3, 1.0, val_loss=nan),
    ]
    assert rv.best_epoch(history) == 2
    assert rv.best_epoch([epoch(1, 1.0, loss=0.3)]) is None


def test_runs_root_is_read_when_called(monkeypatch, tmp_path):
    monkeypatch.setattr(leaderboard, "RUNS", tmp_path / "elsewhere")
    assert rv.runs_root() == tmp_path / "elsewhere"
    assert rv.run_store().root == tmp_path / "elsewhere"


# --- the model catalogue and the form's config ---------------------------------------------------
def test_the_catalogue_is_read_without_keras():
    code = (
        "import sys\n"
        "from portrait_core import run_view as rv\n"
        "c = rv.model_catalog()\n"
        "rv.train_config('d', 'resnet50', 'study', attributes=('gender',))\n"
        "print(sorted(c), 'keras' in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=paths.PROJECT, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["False", "False"]
    assert "resnet50" in out.stdout and "cnn_custom" in out.stdout


def test_train_config_is_the_preset_overridden_by_what_was_given():
    catalog = rv.model_catalog()
    given = dict(attributes=("hairstyle", "age"), epochs=3, lr=None, max_steps_per_epoch=2)
    for preset in rv.PRESETS:
        config = rv.train_config("data/x", "cnn_custom", preset, **given)
        settings = catalog["cnn_custom"].presets[preset]
        assert config.epochs == 3 and config.lr == settings["lr"]  # None: not given
        assert config.batch_size == settings["batch_size"] and config.options == settings["options"]
    ours = rv.train_config("d", "resnet50", "study", options={"weights": "none", "unfreeze": 3})
    assert ours.options["weights"] == "none" and ours.options["unfreeze"] == 3
    assert ours.options["pooling"] == catalog["resnet50"].presets["study"]["options"]["pooling"]


def test_train_config_refuses_what_the_training_process_would():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        rv.train_config("d", "vgg")
    with pytest.raises(ValueError, match="has no option unfreeze"):
        rv.train_config("d", "cnn_custom", options={"unfreeze": 3})
    with pytest.raises(ValueError, match="no attribute given"):
        rv.train_config("d", "cnn_custom", attributes=())
    with pytest.raises(ValueError, match="balance attribute 'age'"):
        rv.train_config("d", "cnn_custom", attributes=("gender",), balance="age")


def test_form_defaults_are_the_preset_over_the_config_defaults():
    catalog = rv.model_catalog()
    study = rv.form_defaults("resnet50", "study", catalog)
    preset = catalog["resnet50"].presets["study"]
    assert study["batch_size"] == preset["batch_size"] and study["epochs"] == preset["epochs"]
    assert study["weights"] == "imagenet" and study["unfreeze"] == preset["options"]["unfreeze"]
    assert study["image_size"] == 128 and study["seed"] == 0  # not in the preset: the config's
    default = rv.form_defaults("cnn_custom", "default", catalog)
    assert default["lr"] == catalog["cnn_custom"].presets["default"]["lr"]
