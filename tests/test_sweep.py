"""Tuning sweeps: spaces checked before TensorFlow, a real sweep killed and resumed, a trial
pruned on purpose, and the Train and Compare pages' sweep views.

The real trials are tiny (80 synthetic pictures at 32 px, 2 epochs of 2 steps); the page tests
fill a sweep's storage through Optuna by hand, so they train nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from streamlit.testing.v1 import AppTest

from portrait_core import leaderboard, paths
from portrait_core.cli import main
from portrait_core.models.catalog import CATALOG
from portrait_core.sweeps import launch
from portrait_core.sweeps.space import (
    check_space,
    default_space,
    parameter_names,
    sample,
    space_text,
)
from portrait_core.sweeps.sweep import (
    MIN_IMPORTANCE_TRIALS,
    OBJECTIVE,
    SweepSpec,
    SweepStore,
    trial_tag,
)
from portrait_core.training.runs import RunStore

APP = str(paths.PROJECT / "app.py")
ATTRIBUTES = "gender,age"
SPACE = {  # two epochs of two steps at 32 px: seconds a trial
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "batch_size": [8, 16],
    "head_units": [0, 16],
    "image_size": 32,
    "epochs": 2,
    "max_steps_per_epoch": 2,
}
WAIT_S = 240  # the sweep's process imports TensorFlow (10-30 s on 2 busy cores), then trains


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from portrait_core.synth import generate

    out = tmp_path_factory.mktemp("sweep-data") / "data"
    generate(out, n=80, seed=5, size=32, progress=False)
    return out


def write_space(folder: Path, space: dict) -> Path:
    path = folder / "space.yaml"
    path.write_text(json.dumps(space))  # JSON is YAML too
    return path


def sweep_args(data: Path, runs: Path, name: str, *extra: str) -> list[str]:
    return ["sweep", "--data", str(data), "--model", "cnn_custom", "--attributes", ATTRIBUTES,
            "--name", name, "--out", str(runs), *extra]  # fmt: skip


# --- spaces ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(CATALOG))
def test_every_models_default_space_is_valid_and_names_only_its_parameters(model):
    space = default_space(model)
    base = {"data": "x", "model": model, "attributes": ("gender",), "out": "runs", "seed": 0}
    params = check_space(space, base)
    assert {"lr", "batch_size", "image_size", "augment"} <= set(space)
    assert set(space) <= set(parameter_names(model))
    assert ("unfreeze" in space) == (model == "resnet50")
    (lr,) = [p for p in params if p.name == "lr"]
    assert lr.kind == "range" and lr.log  # learning rates on a log scale


@pytest.mark.parametrize(
    "space, message",
    [
        ({"lrr": [0.1]}, "'lrr': unknown parameter; cnn_custom's parameters are image_size, "),
        ({"lr": {"low": 0.01, "high": 0.001}}, "space: lr: low (0.01) must be below high"),
        ({"lr": {"low": 0, "high": 0.1, "log": True}}, "a log range must start above 0"),
        ({"lr": {"low": 0.1, "high": 0.2, "top": 1}}, "a range has top; it takes low, high"),
        ({"batch_size": [0, 16]}, "space: batch_size: batch_size must be a whole number"),
        ({"pooling": ["gap", "avg"]}, "'avg' is not one of cnn_custom's flatten, pool_flatten"),
        ({"unfreeze": [10, 20]}, "'unfreeze': unknown parameter"),  # resnet50's only
        ({"seed": [1, 2]}, "'seed': the sweep gives it"),
        ({"epochs": 3}, "nothing is searched"),
    ],
)
def test_a_bad_space_is_refused_with_what_is_wrong(space, message, tiny_data, tmp_path, capsys):
    code = main(sweep_args(tiny_data, tmp_path / "runs", "bad", "--trials", "2", "--space",
                           str(write_space(tmp_path, space))))  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert err.count("\n") == 1
    assert not (tmp_path / "sweeps").exists()  # nothing made


def test_a_bad_space_file_exits_2_with_one_line_before_tensorflow_loads(tiny_data, tmp_path):
    bad = tmp_path / "space.yaml"
    bad.write_text("lr: {low: 1e-4, high: [1e-2\n")
    args = sweep_args(tiny_data, tmp_path / "runs", "bad", "--trials", "2", "--space", str(bad))
    code = (
        "import sys\n"
        "from portrait_core.cli import main\n"
        f"status = main({args!r})\n"
        "print('tensorflow' in sys.modules, 'optuna' in sys.modules)\n"
        "sys.exit(status)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=paths.PROJECT, timeout=60
    )
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: {bad} is not valid YAML or JSON (")
    assert out.stderr.count("\n") == 1
    assert out.stdout.split() == ["False", "False"]  # neither TensorFlow nor even Optuna
    assert not (tmp_path / "sweeps").exists()


def test_resuming_with_other_settings_is_refused(tiny_data, tmp_path, capsys):
    space, runs = write_space(tmp_path, SPACE), tmp_path / "runs"
    spec = SweepSpec("mine", str(tiny_data), "cnn_custom", ("gender", "age"), 3, str(runs))
    SweepStore.beside(runs).prepare(spec, SPACE)
    code = main(sweep_args(tiny_data, runs, "mine", "--space", str(space), "--seed", "4"))
    assert code == 2 and "sweep mine exists with another seed (0, not 4)" in capsys.readouterr().err
    code = main(["sweep", "--name", "new", "--out", str(runs)])
    assert code == 2 and "a new sweep needs --trials" in capsys.readouterr().err


# --- real sweeps ----------------------------------------------------------------------------------
def second_trial_training(runs: Path) -> bool:
    """The second trial's run trains: the first trial was told, the second tagged with its run."""
    found = RunStore(runs).list()  # newest first
    return len(found) >= 2 and found[0].state == "running"


def test_a_sweep_killed_after_its_first_trial_resumes_and_finishes_its_trials(tiny_data, tmp_path):
    runs, name = tmp_path / "runs", "killed"
    args = sweep_args(tiny_data, runs, name, "--trials", "3", "--space",
                      str(write_space(tmp_path, SPACE)))  # fmt: skip
    started = time.monotonic()
    with open(tmp_path / "first.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "portrait_core", *args],
            cwd=paths.PROJECT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            while not second_trial_training(runs):
                assert process.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                assert time.monotonic() - started < WAIT_S, "the first trial never finished"
                time.sleep(0.2)
        finally:
            process.kill()  # SIGKILL: no goodbye, the second trial half begun
            process.wait()
    sweep = SweepStore(tmp_path / "sweeps").get(name)
    assert sweep.state == "interrupted"
    before = sweep.trials()
    assert [r["state"] for r in before] == ["completed", "failed"]  # its process died
    first = RunStore(runs).get(before[0]["run"])

    resumed_at = time.monotonic()
    assert main(["sweep", "--name", name, "--out", str(runs)]) == 0  # the same sweep, resumed
    print(f"resumed 2 trials in {time.monotonic() - resumed_at:.0f} s")
    rows = sweep.trials()
    assert [r["state"] for r in rows] == ["completed", "failed", "completed", "completed"]
    assert rows[1]["error"] == "its sweep process died"
    assert sweep.state == "completed" and sweep.finished() == 3
    assert rows[0] == before[0]  # the finished trial was not run again
    assert {rows[0]["params"]["lr"]} & {r["params"]["lr"] for r in rows[2:]} == set()

    trial_runs = {r.id: r for r in RunStore(runs).list()}
    assert len(trial_runs) == 4 and first.id in trial_runs
    assert trial_runs[rows[1]["run"]].state == "failed"  # killed with the first process
    for row in rows[0:1] + rows[2:]:
        run = trial_runs[row["run"]]
        assert run.state == "completed" and run.metrics  # an ordinary run: Compare lists it
        assert trial_tag(run) == {"sweep": name, "folder": str(sweep.path),
                                  "trial": row["trial"], "params": row["params"]}  # fmt: skip
        assert run.config["train"]["lr"] == row["params"]["lr"]
        assert run.config["train"]["image_size"] == 32 and run.config["train"]["epochs"] == 2
        assert set(row["scores"]) == {"gender", "age"}
        assert all(0.0 <= s <= 1.0 for s in row["scores"].values())
        assert row["objective"] == pytest.approx(sum(row["scores"].values()) / 2)
    study = sweep.study()
    assert (
        study.best_trial.number == max(rows[0:1] + rows[2:], key=lambda r: r["objective"])["trial"]
    )


def test_a_trial_the_pruner_must_prune_is_marked_pruned_not_failed(tiny_data, tmp_path):
    from portrait_core.sweeps.runner import run_sweep

    space = {**SPACE, "epochs": 3, "max_steps_per_epoch": 1}
    spec = SweepSpec("pruned", str(tiny_data), "cnn_custom", ("gender", "age"), 1, str(tmp_path))
    sweep = SweepStore(tmp_path / "sweeps").prepare(spec, space)
    # Reported values are -val_loss, always below 0: this pruner stops any trial at epoch 1.
    state = run_sweep(sweep, pruner=optuna.pruners.ThresholdPruner(lower=0.0), log=lambda _: None)

    assert state == "completed"  # a pruned trial is a finished one
    (row,) = sweep.trials()
    assert row["state"] == "pruned" and row["epochs"] == 1 and row["objective"] is None
    run = RunStore(tmp_path).get(row["run"])
    assert run.state == "pruned" and run.status["pruned_after_epoch"] == 1
    assert run.status.get("error") is None and run.problems == []
    assert [h["epoch"] for h in run.history] == [1]  # stopped in epoch 2's first batch
    assert run.model_file.exists() and run.metrics is None  # never scored on the test split


# --- pages ----------------------------------------------------------------------------------------
@pytest.fixture
def runs_dir(monkeypatch, tmp_path, tiny_data) -> Path:
    """An empty runs folder for the pages (their sweeps beside it), the tiny data set as the
    sidebar's default."""
    runs = tmp_path / "runs"
    monkeypatch.setattr(leaderboard, "RUNS", runs)
    monkeypatch.setattr(leaderboard, "DEFAULT_MODEL", tmp_path / "no-default")
    monkeypatch.setattr(paths, "DEFAULT_DATA", tiny_data)
    monkeypatch.setenv("PORTRAIT_LAB_DATA", str(tiny_data))
    return runs


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(e.value for e in elements)


def add_trials(sweep, objectives: list[float | None]) -> None:
    """Finished trials told by hand, as a sweep process would (None: pruned)."""
    params = sweep.params()
    study = sweep.study()
    for value in objectives:
        study.sampler = optuna.samplers.RandomSampler(seed=len(study.trials))
        trial = study.ask()
        sample(trial, params)
        trial.set_user_attr("run", f"run-{trial.number}")
        trial.set_user_attr("scores", {"gender": value or 0.0, "age": value or 0.0})
        if value is None:
            trial.report(-1.0, 1)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)


def test_the_sweep_tab_starts_a_sweep_and_lists_its_trials(runs_dir, tiny_data, monkeypatch):
    started = []

    def fake_launch(spec, space):  # prepared as the real launcher does, with no process
        sweep = SweepStore.beside(spec.runs).prepare(spec, space)
        sweep.register_worker(os.getpid())  # "running": this very process
        started.append((spec, space))
        return sweep

    monkeypatch.setattr(launch, "launch_sweep", fake_launch)
    at = open_page("pages/train.py")
    assert [t.label for t in at.tabs] == ["Run", "Sweep"]
    assert at.button(key="start")  # the Run tab's form, keys unchanged
    model = at.selectbox(key="sweep_model").value  # the Train form's first choice
    assert at.text_area(key="sweep_space").value == space_text(default_space(model))
    at.selectbox(key="sweep_model").set_value("cnn_custom").run()
    assert "head_units: [0, 32, 64]" in at.text_area(key="sweep_space").value  # its own space

    at.text_area(key="sweep_space").set_value("lr: {low: 1e-3, high: 1e-2, log: true}\nfoo: 1")
    at.button(key="sweep_start").click().run()
    assert "'foo': unknown parameter" in texts(at.error) and not started

    at.text_area(key="sweep_space").set_value(json.dumps(SPACE))
    at.multiselect(key="sweep_attributes").set_value(["gender", "age"])
    at.number_input(key="sweep_trials").set_value(4)
    at.text_input(key="sweep_name").set_value("from-the-page")
    at.button(key="sweep_start").click().run()
    assert not at.exception and not at.error, texts(at.error)
    ((spec, space),) = started
    assert (spec.name, spec.model, spec.attributes, spec.trials) == (
        "from-the-page", "cnn_custom", ("gender", "age"), 4
    )  # fmt: skip
    assert spec.data == str(tiny_data) and spec.runs == str(runs_dir) and space == SPACE
    assert at.selectbox(key="sweep_select").value == "from-the-page"
    assert ":blue-badge[:material/play_arrow: running]" in texts(at.markdown)
    assert "No trial yet" in texts(at.caption)

    sweep = SweepStore.beside(runs_dir).get("from-the-page")
    add_trials(sweep, [0.61, None])  # two trials finish
    at.run()
    (table,) = [d.value for d in at.dataframe if "objective" in d.value.columns]
    assert list(table.columns) == ["trial", "state", "objective", "lr", "batch_size",
                                   "head_units", "epochs", "run"]  # fmt: skip
    assert list(table["state"]) == ["completed", "pruned"]
    assert table["objective"].iloc[0] == pytest.approx(0.61)
    (progress,) = at.get("progress")
    assert progress.value == 50 and progress.text.startswith("2 of 4 trials finished")
    at.button(key="sweep_stop").click().run()
    assert sweep.stop_requested
    sweep.unregister_worker(os.getpid())


def test_a_pruned_run_has_its_own_badge_on_the_train_page(runs_dir):
    run = RunStore(runs_dir).create("cnn_custom", ("gender",))
    run.set_status(state="pruned", pruned_after_epoch=2, finished=time.time())
    (run.path / "sweep.json").write_text(json.dumps({"sweep": "s1", "trial": 5, "params": {}}))
    at = open_page("pages/train.py")
    assert at.selectbox(key="run_select").value == run.id
    assert ":violet-badge[:material/content_cut: pruned]" in texts(at.markdown)
    assert "Trial 5 of sweep **s1**, pruned after epoch 2" in texts(at.info)
    assert not at.error


def test_compare_shows_the_best_trial_parallel_coordinates_and_importances(runs_dir):
    RunStore(runs_dir).create("cnn_custom", ("gender",))  # Compare needs a run to show anything
    spec = SweepSpec("tuned", "data", "cnn_custom", ("gender", "age"), 8, str(runs_dir))
    sweep = SweepStore.beside(runs_dir).prepare(spec, SPACE)
    add_trials(sweep, [0.52, None])
    at = open_page("pages/compare.py")
    assert at.selectbox(key="compare_sweep").value == "tuned"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Trial"] == "0" and metrics[OBJECTIVE] == "0.520"
    assert f"need {MIN_IMPORTANCE_TRIALS} completed trials; this sweep has 1" in texts(at.info)

    add_trials(sweep, [0.70, 0.55, 0.40, 0.66])  # trials 2 to 5
    at.run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Trial"] == "2" and metrics[OBJECTIVE] == "0.700"
    best = sweep.trials()[2]
    (shown,) = [d.value for d in at.dataframe if "parameter" in d.value.columns]
    assert dict(zip(shown["parameter"], shown["value"]))["lr"] == str(best["params"]["lr"])

    charts = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    (parcoords,) = [c["data"][0] for c in charts.values() if c["data"][0]["type"] == "parcoords"]
    axes = {d["label"]: d for d in parcoords["dimensions"]}
    assert list(axes) == ["lr (log)", "batch_size", "head_units", OBJECTIVE]
    assert axes[OBJECTIVE]["values"] == pytest.approx([0.52, 0.70, 0.55, 0.40, 0.66])  # no pruned
    assert axes["batch_size"]["ticktext"] == ["8", "16"]
    assert axes["lr (log)"]["range"] == pytest.approx([-4, -2])
    (bars,) = [c["data"][0] for c in charts.values() if c["data"][0]["type"] == "bar"]
    assert sorted(bars["y"]) == ["batch_size", "head_units", "lr"]
    assert sum(bars["x"]) == pytest.approx(1.0)
