"""The Train and Compare pages under AppTest.

Train starts a real (tiny) run in its own process and stops it; Compare lists runs made by the
tests, draws a confusion matrix and deletes a run only after confirmation. The runs folder is a
tmp folder (leaderboard.RUNS, which the pages read at each run), never artifacts/runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from portrait_core import leaderboard, paths
from portrait_core import run_view as rv
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES
from portrait_core.training.runs import FINAL_STATES, Run, RunStore, process_alive

APP = str(paths.PROJECT / "app.py")
RUN_WAIT_S = 180  # the child process imports TensorFlow (10-30 s on 2 busy cores), then trains
POLL_S = 1.0


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from portrait_core.synth import generate

    out = tmp_path_factory.mktemp("train-page") / "data"
    generate(out, n=120, seed=1, size=48, progress=False)
    return out


@pytest.fixture
def runs_dir(monkeypatch, tmp_path, tiny_data):
    """An empty runs folder for the pages, and the tiny data set as the sidebar's default.

    Any training process still alive at the end is stopped, then killed: a failed test must not
    leave TensorFlow running on the machine.
    """
    runs = tmp_path / "runs"
    monkeypatch.setattr(leaderboard, "RUNS", runs)
    monkeypatch.setattr(leaderboard, "DEFAULT_MODEL", tmp_path / "no-default")
    monkeypatch.setattr(paths, "DEFAULT_DATA", tiny_data)
    monkeypatch.setenv("PORTRAIT_LAB_DATA", str(tiny_data))
    yield runs
    for run in RunStore(runs).list():
        pid = run.status.get("pid")
        if pid == os.getpid() or run.state in FINAL_STATES or not process_alive(pid):
            continue  # (a run trained in this process, e.g. trained_run, names this process)
        run.request_stop()
        deadline = time.monotonic() + 30
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(e.value for e in elements)


def table(at: AppTest, *columns: str):
    """The one data frame on the page with all these columns (st.dataframe has no test key)."""
    (found,) = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    return found


def figure(chart) -> dict:
    return json.loads(chart.proto.spec)


def wait_for(at: AppTest, runs: Path, done, what: str):
    """Rerun the page until done(run) holds for the single run in `runs` (the fragment's ticks)."""
    deadline = time.monotonic() + RUN_WAIT_S
    while time.monotonic() < deadline:
        (run,) = RunStore(runs).list()
        held = done(run)  # checked before the rerun, so the page drawn below already shows it
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if held:
            return run
        time.sleep(POLL_S)
    log = (run.path / "train.log").read_text()[-3000:] if (run.path / "train.log").exists() else ""
    pytest.fail(f"the run never got {what}; status {run.status}\n{log}")


# --- Train -----------------------------------------------------------------------------------------
def test_train_starts_a_tiny_run_shows_it_live_and_stops_it(runs_dir, tiny_data):
    at = open_page("pages/train.py")
    assert any("No runs yet" in i.value for i in at.info)
    at.number_input(key="train_image_size").set_value(48)
    at.number_input(key="train_epochs").set_value(30)
    at.number_input(key="train_batch_size").set_value(16)
    at.number_input(key="train_max_steps").set_value(2)
    at.number_input(key="train_early_stop").set_value(50)  # random data: never stop early
    at.multiselect(key="train_attributes").set_value(["gender", "hairstyle"])
    at.button(key="start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, texts(at.error)

    (run,) = RunStore(runs_dir).list()  # the folder exists at once
    assert at.session_state["run_select"] == run.id
    request = json.loads((run.path / "request.json").read_text())
    assert request["image_size"] == 48 and request["max_steps_per_epoch"] == 2
    assert request["attributes"] == ["gender", "hairstyle"]
    assert request["data"] == str(tiny_data) and request["out"] == str(runs_dir)

    run = wait_for(at, runs_dir, lambda r: r.state == "running" and r.history, "an epoch done")
    page = texts(at.markdown)
    assert "running" in page
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Epoch"].endswith("/ 30") and "Time left" in metrics
    (chart,) = at.get("plotly_chart")
    names = {trace["name"] for trace in figure(chart)["data"]}
    assert {"Gender · train", "Gender · val", "Hairstyle · val"} <= names

    at.button(key="stop").click().run()
    assert not at.exception
    assert (run.path / "STOP").exists()
    run = wait_for(at, runs_dir, lambda r: r.state in FINAL_STATES, "to a final state")
    at.run()
    assert run.state == "cancelled", run.status
    assert ":orange-badge[:material/stop_circle: cancelled]" in texts(at.markdown)
    assert any("stopped before its last epoch" in w.value for w in at.warning)
    assert "stop" not in [b.key for b in at.button]  # nothing left to stop


def test_bad_settings_show_an_error_and_start_nothing(runs_dir):
    at = open_page("pages/train.py")
    at.multiselect(key="train_attributes").set_value([])
    at.button(key="start").click().run()
    assert not at.exception
    assert "no attribute given" in texts(at.error)
    assert not RunStore(runs_dir).list()


def test_a_preset_fills_the_form_and_resnet50_has_its_own_fields(runs_dir):
    from portrait_core.run_view import model_catalog

    presets = model_catalog()["resnet50"].presets
    at = open_page("pages/train.py")
    assert "train_unfreeze" not in [n.key for n in at.number_input]
    at.selectbox(key="train_model").set_value("resnet50").run()
    assert at.number_input(key="train_unfreeze").value == presets["default"]["options"]["unfreeze"]
    assert at.number_input(key="train_batch_size").value == presets["default"]["batch_size"]
    assert at.radio(key="train_weights").value == "imagenet"
    at.radio(key="train_preset").set_value("study").run()
    assert at.number_input(key="train_batch_size").value == presets["study"]["batch_size"]
    assert at.number_input(key="train_epochs").value == presets["study"]["epochs"]
    assert not at.exception


@pytest.fixture
def started(monkeypatch) -> list:
    """The configs Start hands to training, as the training process would get them: each gets
    a run folder, and no process starts."""
    from portrait_core.training import launch

    configs = []

    def fake_launch(config):
        configs.append(config)
        return RunStore(config.out).create(config.model, config.attributes)

    monkeypatch.setattr(launch, "launch_training", fake_launch)
    return configs


def test_the_form_becomes_the_runs_config(runs_dir, tiny_data, started):
    at = open_page("pages/train.py")
    at.selectbox(key="train_model").set_value("resnet50").run()
    at.radio(key="train_weights").set_value("none")
    at.number_input(key="train_unfreeze").set_value(20)
    at.multiselect(key="train_attributes").set_value(["age", "hairstyle"]).run()
    at.selectbox(key="train_balance").set_value("hairstyle").run()
    at.number_input(key="train_balance_target").set_value(100)
    at.number_input(key="train_seed").set_value(3)
    at.number_input(key="train_max_steps").set_value(5)
    at.number_input(key="train_max_minutes").set_value(12.5)
    assert at.number_input(key="train_ordinal_spread").value == 0.0  # resnet50's preset
    at.number_input(key="train_ordinal_spread").set_value(0.6)
    at.toggle(key="train_augment").set_value(False)
    at.toggle(key="train_faces").set_value(True)
    at.button(key="start").click().run()
    assert not at.exception and not at.error, texts(at.error)

    (config,) = started
    assert config.model == "resnet50" and config.attributes == ("age", "hairstyle")
    assert config.options == {"weights": "none", "unfreeze": 20, "pooling": "gap"}
    assert config.balance == "hairstyle:100" and config.seed == 3 and not config.augment
    assert config.max_steps_per_epoch == 5 and config.faces and config.max_minutes == 12.5
    assert config.ordinal_spread == pytest.approx(0.6)
    assert config.data == str(tiny_data) and config.out == str(runs_dir)
    (run,) = RunStore(runs_dir).list()
    assert at.selectbox(key="run_select").value == run.id  # shown at once

    # a balancing attribute no longer trained falls back to none, without an error
    at.multiselect(key="train_attributes").set_value(["age"]).run()
    assert not at.exception
    assert at.selectbox(key="train_balance").value == "none"


def test_soft_age_targets_from_the_form_and_one_softening_at_a_time(runs_dir, started):
    at = open_page("pages/train.py")
    assert at.number_input(key="train_age_spread").value == 0.0
    at.number_input(key="train_age_spread").set_value(3.0)
    at.number_input(key="train_ordinal_spread").set_value(0.6)
    at.button(key="start").click().run()
    # both soften the age targets: a message naming the clash, no run, no traceback
    assert not at.exception and not started
    assert "give one, not both" in texts(at.error)
    at.number_input(key="train_ordinal_spread").set_value(0.0)
    at.button(key="start").click().run()
    assert not at.exception and not at.error, texts(at.error)
    (config,) = started
    assert config.age_spread == pytest.approx(3.0) and config.ordinal_spread == 0.0


def test_degraded_share_from_the_form_only_where_the_preset_has_the_photo_augmentation(
    runs_dir, started
):
    at = open_page("pages/train.py")
    share = at.number_input(key="train_degrade_share")
    assert share.value is None and not share.disabled  # empty: the recipe's own
    at.button(key="start").click().run()
    assert started[-1].augmentation == "photo" and started[-1].degrade_share is None
    at.number_input(key="train_degrade_share").set_value(0.45)
    at.button(key="start").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert started[-1].degrade_share == pytest.approx(0.45)
    # the study's preset has the study's augmentation: the field is off and not sent
    at.radio(key="train_preset").set_value("study").run()
    assert at.number_input(key="train_degrade_share").disabled
    at.button(key="start").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert started[-1].augmentation == "study" and started[-1].degrade_share is None
    assert len(started) == 3


def test_without_a_data_set_start_is_disabled(runs_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "DEFAULT_DATA", tmp_path / "absent")
    at = open_page("pages/train.py")
    assert at.button(key="start").disabled
    assert "Choose a data set" in texts(at.caption)


def test_finished_and_failed_runs_show_metrics_or_their_error(runs_dir, trained_run):
    shutil.copytree(trained_run.path, runs_dir / trained_run.id)
    failed = RunStore(runs_dir).create("cnn_custom", ("gender",))  # e.g. started from the CLI
    failed.set_status(state="failed", error="WeightsUnavailable: no network")
    (failed.path / "train.log").write_text("Traceback ...\nWeightsUnavailable: no network\n")

    at = open_page("pages/train.py")
    assert at.selectbox(key="run_select").value == failed.id  # newest first
    assert "no network" in texts(at.error)
    assert "WeightsUnavailable" in texts(at.get("code"))

    at.selectbox(key="run_select").set_value(trained_run.id).run()
    assert not at.exception
    assert "completed" in texts(at.markdown)
    metrics = table(at, "accuracy", "balanced_accuracy", "macro_f1", "majority_baseline")
    assert len(metrics) == len(trained_run.config["attributes"])
    assert len(at.get("plotly_chart")) == 1  # the curves


def test_a_failed_run_with_a_backup_offers_resume(runs_dir, trained_run, monkeypatch):
    """A killed run that backed up epoch 3 gets a Resume button; one killed before its first
    backup says it cannot be resumed; the button hands the run to `train --resume`."""
    from portrait_core.training import launch

    killed = RunStore(runs_dir).create("cnn_custom", ("gender",))
    shutil.copy(trained_run.path / "config.json", killed.path / "config.json")
    (killed.path / "backup").mkdir()
    (killed.path / "backup" / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    killed.set_status(state="failed", error="the training process died")
    resumed = []

    def fake_resume(run):
        resumed.append(run.id)
        run.set_status(state="queued", error=None)
        return run

    monkeypatch.setattr(launch, "launch_resume", fake_resume)
    at = open_page("pages/train.py")
    assert at.selectbox(key="run_select").value == killed.id
    assert at.button(key="resume").label == "Resume from epoch 3"
    at.button(key="resume").click().run()
    assert not at.exception and resumed == [killed.id]

    early = RunStore(runs_dir).create("cnn_custom", ("gender",))  # died before any backup
    early.set_status(state="failed", error="the training process died")
    at = open_page("pages/train.py")
    assert at.selectbox(key="run_select").value == early.id
    assert not at.get("button") or all(b.key != "resume" for b in at.button)
    assert "It cannot be resumed" in texts(at.caption)


# --- Compare ---------------------------------------------------------------------------------------
@pytest.fixture
def with_run(runs_dir, trained_run):
    shutil.copytree(trained_run.path, runs_dir / trained_run.id)
    return RunStore(runs_dir).get(trained_run.id)


def test_compare_without_runs_links_to_train(runs_dir):
    at = open_page("pages/compare.py")
    assert "No runs yet" in texts(at.info)
    assert at.get("page_link")


def test_compare_lists_the_run_with_curves_and_a_confusion_matrix(with_run):
    at = open_page("pages/compare.py")
    board = table(at, "run", "attribute", "params", "ms_per_image")
    attributes = with_run.config["attributes"]
    assert set(board["run"]) == {with_run.id}
    assert sorted(board["attribute"]) == sorted(ATTRIBUTES[a].title for a in attributes)
    (best,) = [d.value for d in at.dataframe if "run" in d.value and "params" not in d.value]
    assert list(best["run"]) == [with_run.id] * len(attributes)  # the only run is the best
    assert list(best["attribute"]) == ["Gender", "Age band", "Face shape", "Hairstyle"]

    charts = [figure(c) for c in at.get("plotly_chart")]
    types = [c["data"][0]["type"] for c in charts]
    assert types == ["scatter", "heatmap", "bar"]  # curves, confusion matrix, per-class scores
    heat = charts[1]["data"][0]  # the first attribute in schema order: gender
    assert heat["y"] == ["male", "female"] and heat["x"] == ["male", "female"]
    assert sum(map(sum, heat["text"])) == with_run.metrics["attributes"]["gender"]["n"]

    at.multiselect(key="filter_attribute").set_value(["hairstyle"]).run()
    assert set(table(at, "run", "params")["attribute"]) == {"Hairstyle"}
    at.selectbox(key="detail_attribute").set_value("hairstyle").run()
    heat = figure(at.get("plotly_chart")[1])["data"][0]
    assert heat["y"][0] == "straight" and len(heat["y"]) == 5
    assert not at.exception


def shown(element) -> pd.DataFrame:
    """A styled st.table as the page shows it: its formatted text, cell by cell."""
    import pyarrow as pa

    return pa.ipc.open_stream(element.proto.arrow_data.styler.display_values).read_pandas()


def shaded(element) -> set[tuple[int, int]]:
    """(row, column) of each cell of a styled st.table that has a background colour."""
    cells = set()
    for rule in element.proto.arrow_data.styler.styles.splitlines():
        selectors, _, body = rule.partition("{")
        if "background-color" in body:
            cells |= {(int(r), int(c)) for r, c in re.findall(r"row(\d+)_col(\d+)", selectors)}
    return cells


def edit_metrics(run: Run, change) -> dict:
    metrics = json.loads((run.path / "metrics.json").read_text())
    change(metrics)
    (run.path / "metrics.json").write_text(json.dumps(metrics))
    return metrics


def older_copy(run: Run, runs: Path) -> Run:
    """The run as one trained before issue 11 left it: no calibration.json, no ECE, no
    robustness section (named to sort after it: older)."""
    old = Run(runs / "20000101-000000-000_cnn_custom_older")
    shutil.copytree(run.path, old.path)
    (old.path / "calibration.json").unlink()

    def strip(metrics):
        metrics.pop("robustness")
        for entry in metrics["attributes"].values():
            for key in ("ece_before", "ece_after", "temperature"):
                entry.pop(key, None)

    edit_metrics(old, strip)
    return old


def test_compare_shows_the_calibration_error_and_the_robustness_table(with_run):
    def worse_on_jpeg(metrics):  # a drop over the flag for sure, whatever the tiny run learnt
        clean = metrics["attributes"]["gender"]["balanced_accuracy"]
        entry = metrics["robustness"]["degradations"]["jpeg_q20"]["attributes"]["gender"]
        entry |= {"balanced_accuracy": clean - 0.2, "balanced_accuracy_drop": 0.2}

    metrics = edit_metrics(with_run, worse_on_jpeg)
    scores = metrics["attributes"]
    heads = [a for a in ATTRIBUTE_KEYS if scores.get(a, {}).get("n")]
    assert heads and all(scores[a]["temperature"] for a in heads)  # the trained run's own
    at = open_page("pages/compare.py")
    assert at.multiselect(key="quality_runs").value == [with_run.id]

    board = table(at, "run", "params", "ece_before").set_index("attribute")
    for a in heads:
        row = board.loc[ATTRIBUTES[a].title]
        assert row["ece_before"] == pytest.approx(scores[a]["ece_before"])
        assert row["ece_after"] == pytest.approx(scores[a]["ece_after"])
        assert row["temperature"] == pytest.approx(scores[a]["temperature"])

    calibration, *robustness = at.table
    values, text = calibration.value, shown(calibration)
    assert list(values.index) == [ATTRIBUTES[a].title for a in heads]
    assert set(values["run"]) == {with_run.id}
    for i, a in enumerate(heads):
        assert values.iloc[i]["ECE before"] == pytest.approx(scores[a]["ece_before"])
        assert values.iloc[i]["ECE after"] == pytest.approx(scores[a]["ece_after"])
        assert text.iloc[i]["T"] == f"{scores[a]['temperature']:.2f}"
        assert text.iloc[i]["calibration"].startswith("temperature-scaled")
    (heading,) = [h for h in at.subheader if h.value == "Calibration"]
    assert "15 equal-width bins" in heading.proto.help  # what ECE is, one click away

    # one table per attribute: clean first, then each degradation; its score and its drop
    assert len(robustness) == len(heads)
    assert [m.value for m in at.markdown if m.value.endswith(": balanced accuracy")] == [
        f"**{ATTRIBUTES[a].title}**: balanced accuracy" for a in heads
    ]
    degradations = metrics["robustness"]["degradations"]
    for a, element in zip(heads, robustness, strict=True):
        frame = element.value
        assert list(frame.columns) == ["balanced accuracy", "drop"]
        assert list(frame.index) == [rv.CLEAN] + [d["title"] for d in degradations.values()]
        entries = [d["attributes"][a] for d in degradations.values()]
        expected = [scores[a]["balanced_accuracy"]] + [e["balanced_accuracy"] for e in entries]
        assert frame["balanced accuracy"].tolist() == pytest.approx(expected)
        drops = [e["balanced_accuracy_drop"] for e in entries]
        assert frame["drop"].tolist() == pytest.approx([0.0, *drops])
        flagged = {i + 1 for i, d in enumerate(drops) if d > rv.DROP_FLAG}
        assert shaded(element) == {(i, c) for i in flagged for c in (0, 1)}, a
    jpeg = list(degradations).index("jpeg_q20") + 1
    assert {(jpeg, 0), (jpeg, 1)} <= shaded(robustness[heads.index("gender")])
    assert shown(robustness[heads.index("gender")]).iloc[jpeg]["drop"] == "+0.200"
    assert "5 degradations of the" in texts(at.caption)
    assert not at.exception


def test_compare_says_not_measured_for_a_run_older_than_calibration(with_run, runs_dir):
    old = older_copy(with_run, runs_dir)
    at = open_page("pages/compare.py")
    assert at.multiselect(key="quality_runs").value == [with_run.id, old.id]
    board = table(at, "run", "params", "ece_before")
    assert (
        board[board["run"] == old.id][["ece_before", "ece_after", "temperature"]].isna().all().all()
    )

    calibration, *robustness = at.table
    rows = shown(calibration)
    olds = rows[rows["run"] == old.id]
    assert len(olds) == len(rows) // 2 and (olds["ECE before"] == "–").all()
    assert olds["calibration"].str.startswith("not measured").all()

    # both runs side by side: a column each, the older one's degraded rows not measured
    gender = robustness[0]
    assert list(gender.value.columns) == [with_run.id, old.id]
    text = shown(gender)
    assert text[old.id].iloc[0] == f"{old.metrics['attributes']['gender']['balanced_accuracy']:.3f}"
    assert (text[old.id].iloc[1:] == "not measured").all()
    assert not any(c == 1 for _, c in shaded(gender))  # nothing flagged in the older column

    at.multiselect(key="quality_runs").set_value([old.id]).run()
    assert not at.exception
    assert len(at.table) == 1  # calibration only
    assert "Not measured: this run predates the robustness evaluation" in texts(at.caption)

    at.multiselect(key="quality_runs").set_value([]).run()
    assert not at.exception and not at.table
    assert "Choose one or more runs." in texts(at.caption)


def test_deleting_a_run_asks_first_then_removes_its_folder(with_run):
    at = open_page("pages/compare.py")
    at.button(key="delete").click().run()
    assert with_run.path.exists()  # not yet: a confirmation first
    assert with_run.id in texts(at.warning)
    at.button(key="delete_cancel").click().run()
    assert with_run.path.exists()
    assert not [b for b in at.button if b.key == "delete_confirm"]

    at.button(key="delete").click().run()
    at.button(key="delete_confirm").click().run()
    assert not at.exception
    assert not with_run.path.exists()
    assert f"Deleted {with_run.id}" in texts(at.success)
    assert "No runs yet" in texts(at.info)


def test_a_running_run_is_not_deleted(runs_dir):
    run = RunStore(runs_dir).create("cnn_custom", ("gender",))
    run.set_status(state="running", pid=os.getpid())  # alive: this very process
    at = open_page("pages/compare.py")
    at.button(key="delete").click().run()
    at.button(key="delete_confirm").click().run()
    assert not at.exception
    assert "still running" in texts(at.error)
    assert run.path.exists()


def test_train_and_compare_do_not_import_tensorflow(runs_dir, trained_run, tiny_data):
    shutil.copytree(trained_run.path, runs_dir / trained_run.id)
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({APP!r}, default_timeout=60).run()\n"
        "for page in ('pages/train.py', 'pages/compare.py'):\n"
        "    at.switch_page(page).run()\n"
        "    assert not at.exception, at.exception\n"
        "print(len(at.get('plotly_chart')), 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    env = {**os.environ, "PORTRAIT_LAB_DATA": str(tiny_data), "PORTRAIT_LAB_RUNS": str(runs_dir)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=paths.PROJECT,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["3", "False", "False"]
