"""The app under Streamlit's AppTest: the Dataset page and the shared sidebar data-set chooser.

AppTest runs app.py in this process, so the data set is chosen by patching
portrait_core.paths.DEFAULT_DATA (read by pages/common.py at each run) as well as the environment
variable it comes from.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from portrait_core import app_support as support
from portrait_core import paths
from portrait_core.data.formats import load_dataset
from portrait_core.data.stats import dataset_stats
from portrait_core.schema import ATTRIBUTE_KEYS
from portrait_core.synth import generate

APP = str(paths.PROJECT / "app.py")
N_PICTURES = 90
PAGES = ("pages/dataset.py", "pages/train.py", "pages/compare.py", "pages/predict.py")


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """A small unbalanced synthetic set in the AI Hub layout (N.png + N.json)."""
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, N_PICTURES, seed=5, size=48, balanced=False, progress=False, workers=1)
    return root


@pytest.fixture
def use_data(monkeypatch):
    def use(path: Path) -> None:
        monkeypatch.setenv("PORTRAIT_LAB_DATA", str(path))
        monkeypatch.setattr(paths, "DEFAULT_DATA", Path(path))

    return use


def run_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest):
    return at.get("plotly_chart")


def figure(chart) -> dict:
    return json.loads(chart.proto.spec)


def array(value) -> np.ndarray:
    """A plotly trace array, plain list or plotly's binary {'dtype', 'bdata', 'shape'}."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = [int(s) for s in str(value.get("shape", len(flat))).split(",")]
        return flat.reshape(shape)
    return np.asarray(value)


def test_dataset_page_shows_counts_charts_and_warnings(small_set, use_data):
    use_data(small_set)
    at = run_app()
    assert at.title[0].value == "Dataset"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pictures"] == f"{N_PICTURES:,}"
    assert metrics["Format"] == "aihub"
    split_total = sum(int(metrics[f"{s} split"].replace(",", "")) for s in ("Train", "Val", "Test"))
    assert split_total == N_PICTURES

    # one grouped bar chart per attribute (train/val/test traces) plus the cross-tab heat map
    figures = [figure(c) for c in charts(at)]
    bars = [f for f in figures if f["data"][0]["type"] == "bar"]
    assert len(bars) == len(ATTRIBUTE_KEYS)
    assert all([t.get("name") for t in f["data"]] == ["train", "val", "test"] for f in bars)
    stats = dataset_stats(load_dataset(small_set))
    shown = sum(array(t["y"]).sum() for t in bars[0]["data"])
    assert shown == sum(stats["counts"][ATTRIBUTE_KEYS[0]].values())

    # the unbalanced hairstyle classes (sports 2.5 %, balding 2 %) are flagged
    hair = stats["counts"]["hairstyle"]
    expected = support.minority_warnings(hair)
    assert expected, "the fixture should have a rare hairstyle class"
    warnings = [w.value for w in at.warning]
    assert all(message in warnings for message in expected)
    top, share = support.majority_share(hair)
    assert any(f"**{top}**: {share:.1%}" in c.value for c in at.caption)

    assert len(at.dataframe) == 1  # missing labels per attribute
    assert len(at.get("image")) == 12  # the sample grid
    assert not at.sidebar.error


def test_cross_tab_follows_the_chosen_attributes(small_set, use_data):
    use_data(small_set)
    at = run_app()
    at.selectbox(key="xtab_rows").set_value("face_shape")
    at.selectbox(key="xtab_cols").set_value("hairstyle").run()
    assert not at.exception
    heat = [figure(c) for c in charts(at) if figure(c)["data"][0]["type"] == "heatmap"]
    assert len(heat) == 1
    z = array(heat[0]["data"][0]["z"])
    expected = support.crosstab(load_dataset(small_set).table, "face_shape", "hairstyle")
    assert np.array_equal(z, expected.to_numpy())
    assert heat[0]["data"][0]["y"] == list(expected.index)


def test_balancing_shows_counts_before_and_after(small_set, use_data):
    use_data(small_set)
    at = run_app()
    at.toggle(key="balance_on").set_value(True).run()
    assert not at.exception
    at.selectbox(key="balance_attr").set_value("gender").run()
    at.number_input(key="balance_target_gender").set_value(60).run()
    assert not at.exception
    train = dataset_stats(load_dataset(small_set))["splits"]["train"]["gender"]
    summary = support.balance_summary(train, 60)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Labelled pictures per epoch"] == f"{summary.after:,}"
    balance = [
        f
        for f in map(figure, charts(at))
        if [t.get("name") for t in f["data"]][:2] == ["before", "after"]
    ]
    assert len(balance) == 1
    assert list(array(balance[0]["data"][1]["y"])) == list(
        support.balanced_counts(train, 60).values()
    )


def test_sample_grid_filters_by_class(small_set, use_data):
    use_data(small_set)
    at = run_app()
    at.selectbox(key="sample_gender").set_value("female").run()
    assert not at.exception
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert captions and all(c.startswith("female · ") for c in captions)
    # a combination nobody has: a message, not an empty grid or an error
    for attr, cls in (("age", "60+"), ("face_shape", "diamond"), ("hairstyle", "balding")):
        at.selectbox(key=f"sample_{attr}").set_value(cls)
    at.run()
    assert not at.exception
    assert not at.get("image") and any("No picture has all" in i.value for i in at.info)


@pytest.mark.parametrize("kind", ["absent", "empty folder", "not a folder"])
def test_a_bad_folder_path_shows_an_error_not_an_exception(small_set, use_data, tmp_path, kind):
    use_data(small_set)
    bad = {"absent": tmp_path / "nowhere", "empty folder": tmp_path, "not a folder": None}[kind]
    if bad is None:
        bad = tmp_path / "notes.txt"
        bad.write_text("hello")
    at = run_app()
    at.sidebar.radio(key="data_source").set_value("Folder path").run()
    at.sidebar.text_input(key="data_path").input(str(bad)).run()
    assert not at.exception
    assert len(at.sidebar.error) == 1
    message = at.sidebar.error[0].value
    assert "Portrait Lab can read" in message and str(bad) in message
    assert at.session_state["data_path_resolved"] is None
    assert not charts(at)
    assert "No data set is loaded" in at.info[0].value  # the main area says so too


def test_a_folder_with_nothing_loadable_says_why(use_data, tmp_path):
    (tmp_path / "1.json").write_text("{not json")
    (tmp_path / "1.png").write_bytes(b"not a picture")
    use_data(tmp_path)
    at = run_app()
    assert any("No picture could be loaded" in w.value for w in at.warning)
    assert "unreadable image" in " ".join(m.value for m in at.sidebar.markdown)


def test_sidebar_lists_pictures_left_out_apart_from_labels_left_blank(use_data, tmp_path):
    from PIL import Image

    def pair(n: int, label: str, picture: bool | bytes = True) -> None:
        (tmp_path / f"{n}.json").write_text(label, encoding="utf-8")
        if picture is True:
            Image.new("RGB", (8, 8), (90, 60, 40)).save(tmp_path / f"{n}.png")
        elif picture:
            (tmp_path / f"{n}.png").write_bytes(picture)

    def labels(age: int = 35, face: str = "계란형") -> str:
        doc = {
            "info": [{"gender": "F", "age": age}],
            "descripton": [{"face": {"type": face}, "hairstyle": {"type": "웨이브형"}}],
        }
        return json.dumps(doc, ensure_ascii=False)

    pair(1, labels())
    pair(2, "{not json")  # malformed JSON: left out
    pair(3, labels(), picture=False)  # no image: left out
    pair(4, labels(), picture=b"not a picture")  # unreadable image: left out
    pair(5, labels(age=15))  # age out of range: kept, age blank
    pair(6, labels(face="하트형"))  # unknown value: kept, face shape blank
    use_data(tmp_path)
    at = run_app()
    assert {m.label: m.value for m in at.metric}["Pictures"] == "3"
    headline = at.sidebar.markdown[0].value
    assert "**3** pictures loaded" in headline and "**3** left out" in headline
    assert "**2** labels left blank" in headline
    by_label = {e.label: e for e in at.sidebar.expander}
    assert set(by_label) == {"Pictures left out (3)", "Labels left blank (2)"}
    left_out = [m.value for m in by_label["Pictures left out (3)"].markdown]
    assert sorted(left_out) == [
        "- **1** malformed JSON",
        "- **1** no image",
        "- **1** unreadable image",
    ]
    blank = by_label["Labels left blank (2)"]
    assert [m.value for m in blank.markdown] == [
        "- Age band: **1** age out of range",
        "- Face shape: **1** unknown value",
    ]
    assert [c.value for c in blank.caption][1:] == ["5.json", "6.json"]  # the examples
    assert "4.png" in [c.value for c in by_label["Pictures left out (3)"].caption]
    assert any("2 of the missing labels were given but unusable" in c.value for c in at.caption)


def test_missing_default_data_says_how_to_make_it(use_data, tmp_path):
    use_data(tmp_path / "synthetic")
    at = run_app()
    assert any("make data" in w.value for w in at.sidebar.warning)
    assert not charts(at)


def test_folder_path_is_kept_across_pages(small_set, use_data, tmp_path):
    use_data(tmp_path / "absent-default")
    at = run_app()
    at.sidebar.radio(key="data_source").set_value("Folder path").run()
    at.sidebar.text_input(key="data_path").input(str(small_set)).run()
    assert len(charts(at)) == len(ATTRIBUTE_KEYS) + 1
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert at.sidebar.radio(key="data_source").value == "Folder path"
    assert at.sidebar.text_input(key="data_path").value == str(small_set)
    assert at.session_state["data_path_resolved"] == str(small_set)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(small_set, use_data, page):
    use_data(small_set)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception
    assert at.title


def test_the_dataset_page_does_not_import_tensorflow(small_set):
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({APP!r}, default_timeout=60).run()\n"
        "assert not at.exception, at.exception\n"
        "print(len(at.get('plotly_chart')), 'tensorflow' in sys.modules)\n"
    )
    env = {**os.environ, "PORTRAIT_LAB_DATA": str(small_set)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=paths.PROJECT,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == [str(len(ATTRIBUTE_KEYS) + 1), "False"]
