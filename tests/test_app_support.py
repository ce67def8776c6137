"""The numbers the app's pages show, computed by portrait_core.app_support without Streamlit."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from portrait_core import app_support as support
from portrait_core.data.split import SPLITS
from portrait_core.data.stats import class_counts, dataset_stats
from portrait_core.data.table import ImportReport, make_table
from portrait_core.paths import PROJECT
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES


def table_of(*rows: dict) -> pd.DataFrame:
    return make_table([{"path": f"/x/{i:03d}.png", **r} for i, r in enumerate(rows)])


HAIR = {"straight": 50, "sports": 3, "curly": 30, "wavy": 17, "balding": 0}


def test_majority_share_is_the_always_answer_it_baseline():
    assert support.majority_share(HAIR) == ("straight", 0.5)
    assert support.majority_share({"male": 0, "female": 0}) == (None, 0.0)
    # ties go to the first class in schema order, so the answer does not flicker
    assert support.majority_share({"male": 5, "female": 5}) == ("male", 0.5)


def test_minority_warnings_name_rare_and_absent_classes():
    messages = support.minority_warnings(HAIR)
    assert len(messages) == 2
    assert "'sports'" in messages[0] and "3.0%" in messages[0] and "3 of 100" in messages[0]
    assert "'balding'" in messages[1] and "no picture" in messages[1]
    assert support.minority_warnings(HAIR, threshold=0.02) == messages[1:]
    assert support.minority_warnings({"male": 0, "female": 0}) == []
    assert support.minority_warnings({"male": 50, "female": 50}) == []
    titled = support.minority_warnings(HAIR, attribute="hairstyle")
    assert all(m.startswith("Hairstyle: ") for m in titled)


@pytest.mark.parametrize("target", [None, 1, 20, 50, 80])
def test_balanced_counts_raise_present_classes_to_target(target):
    after = support.balanced_counts(HAIR, target)
    assert list(after) == list(HAIR)
    for cls, n in HAIR.items():
        if target is None:
            assert after[cls] == n
        elif n == 0:
            assert after[cls] == 0  # nothing to repeat
        else:
            assert after[cls] == max(n, target)


def test_balanced_counts_reject_a_target_below_one():
    with pytest.raises(ValueError, match="at least 1"):
        support.balanced_counts(HAIR, 0)


def test_balance_summary_and_frame():
    summary = support.balance_summary(HAIR, 50)
    assert summary.before == 100
    assert summary.after == 50 + 50 + 50 + 50 + 0
    assert summary.most_repeated == "sports"
    assert summary.repeat == pytest.approx(50 / 3)
    frame = support.balance_frame(HAIR, 50)
    before = frame[frame["when"] == "before"].set_index("class")["count"].to_dict()
    after = frame[frame["when"] == "after"].set_index("class")["count"].to_dict()
    assert before == HAIR and after == support.balanced_counts(HAIR, 50)


def test_crosstab_counts_pairs_with_every_schema_class():
    table = table_of(
        {"gender": "male", "age": "20s"},
        {"gender": "male", "age": "20s"},
        {"gender": "female", "age": "60+"},
        {"gender": "female"},  # no age: left out
        {"age": "30s"},  # no gender: left out
    )
    grid = support.crosstab(table, "gender", "age")
    assert list(grid.index) == list(ATTRIBUTES["gender"].classes)
    assert list(grid.columns) == list(ATTRIBUTES["age"].classes)
    assert grid.loc["male", "20s"] == 2 and grid.loc["female", "60+"] == 1
    assert grid.to_numpy().sum() == 3


def test_crosstab_of_an_attribute_with_itself_is_its_diagonal(make_pictures):
    table = make_pictures(40).table
    grid = support.crosstab(table, "hairstyle", "hairstyle")
    counts = class_counts(table)["hairstyle"]
    assert np.array_equal(np.diag(grid.to_numpy()), list(counts.values()))
    assert grid.to_numpy().sum() == sum(counts.values())


def test_crosstab_agrees_with_pandas(make_pictures):
    table = make_pictures(60, seed=2).table
    grid = support.crosstab(table, "face_shape", "hairstyle")
    expected = pd.crosstab(table["face_shape"], table["hairstyle"], dropna=False)
    expected = expected.reindex(
        index=ATTRIBUTES["face_shape"].classes, columns=ATTRIBUTES["hairstyle"].classes
    ).fillna(0)
    assert np.array_equal(grid.to_numpy(), expected.to_numpy().astype(int))


def test_missing_labels_per_attribute():
    table = table_of({"gender": "male"}, {"gender": "female", "age": "20s"}, {})
    frame = support.missing_labels(table).set_index("attribute")
    assert list(frame.index) == [ATTRIBUTES[a].title for a in ATTRIBUTE_KEYS]
    assert frame.loc["Gender", "missing"] == 1 and frame.loc["Gender", "labelled"] == 2
    assert frame.loc["Age band", "missing"] == 2
    assert frame.loc["Hairstyle", "missing share"] == 1.0


def test_split_counts_and_sizes_match_the_stats(make_pictures):
    dataset = make_pictures(80, seed=1)
    stats = dataset_stats(dataset)
    sizes = support.split_sizes(dataset)
    assert list(sizes) == list(SPLITS) and sum(sizes.values()) == 80
    for attr in ATTRIBUTE_KEYS:
        frame = support.split_counts(stats, attr)
        assert len(frame) == ATTRIBUTES[attr].n_classes * len(SPLITS)
        per_class = frame.groupby("class", sort=False)["count"].sum().to_dict()
        assert per_class == stats["counts"][attr]
        for split in SPLITS:
            assert frame[frame["split"] == split]["count"].sum() <= sizes[split]


def test_sample_rows_filter_and_are_reproducible(make_pictures):
    table = make_pictures(100, seed=4, missing=0.0).table
    rows = support.sample_rows(table, {"gender": "female", "age": None}, 12, seed=1)
    assert 0 < len(rows) <= 12
    assert (rows["gender"] == "female").all()
    again = support.sample_rows(table, {"gender": "female", "age": None}, 12, seed=1)
    assert list(rows["path"]) == list(again["path"])
    other = support.sample_rows(table, {"gender": "female"}, 12, seed=2)
    assert list(rows["path"]) != list(other["path"])
    assert len(support.sample_rows(table, {}, 500, seed=0)) == 100


def test_sample_rows_with_no_match_is_empty_and_bad_filters_are_errors():
    table = table_of({"gender": "male"}, {"gender": "male", "hairstyle": "curly"})
    assert support.sample_rows(table, {"gender": "female"}, 5).empty
    assert len(support.sample_rows(table, {"hairstyle": "curly"}, 5)) == 1
    with pytest.raises(ValueError, match="no class"):
        support.sample_rows(table, {"gender": "other"}, 5)
    with pytest.raises(ValueError, match="unknown attribute"):
        support.sample_rows(table, {"mood": "happy"}, 5)


def test_label_line_marks_missing_labels():
    table = table_of({"gender": "female", "age": "30s", "hairstyle": "wavy"})
    assert support.label_line(table.iloc[0]) == "female · 30s · ? · wavy"


def test_thumbnail_fits_the_box_and_reports_unreadable_files(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (400, 200), (10, 20, 30)).save(path)
    thumb = support.thumbnail(path, size=100)
    assert thumb.shape == (50, 100, 3) and thumb.dtype == np.uint8
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture")
    assert support.thumbnail(bad) is None


def test_skipped_rows_list_reasons_most_frequent_first():
    report = ImportReport(format="aihub", n_loaded=3)
    report.skip("no image", "1.json")
    for name in ("2.json", "3.json"):
        report.skip("malformed JSON", name)
    frame = support.skipped_rows(report)
    assert list(frame["reason"]) == ["malformed JSON", "no image"]
    assert list(frame["count"]) == [2, 1]
    assert frame.iloc[0]["examples"] == "2.json, 3.json"
    assert support.skipped_rows(ImportReport(format="aihub")).empty


def test_blank_labels_are_listed_apart_from_pictures_left_out():
    report = ImportReport(format="aihub", n_loaded=3)
    report.skip("no image", "1.json")
    report.blank("hairstyle", "unknown value", "4.json")
    for name in ("2.json", "3.json"):
        report.blank("age", "age out of range", name)
    report.blank("age", "unknown value", "5.json")
    assert report.n_skipped == 1 and report.n_blank == 4
    assert list(support.skipped_rows(report)["reason"]) == ["no image"]
    frame = support.blank_label_rows(report)
    assert frame.to_dict("records") == [  # schema order, the most frequent reason first
        {"attribute": "Age band", "reason": "age out of range", "count": 2, "examples": "2.json, 3.json"},
        {"attribute": "Age band", "reason": "unknown value", "count": 1, "examples": "5.json"},
        {"attribute": "Hairstyle", "reason": "unknown value", "count": 1, "examples": "4.json"},
    ]  # fmt: skip
    assert support.blank_label_rows(ImportReport(format="aihub")).empty
    with pytest.raises(ValueError, match="unknown attribute"):
        report.blank("eye_colour", "unknown value", "6.json")


def test_data_version_changes_when_a_file_is_added(tmp_path):
    assert support.data_version(tmp_path / "absent") == 0.0
    before = support.data_version(tmp_path)
    os.utime(tmp_path, (before - 10, before - 10))
    (tmp_path / "new.json").write_text("{}")
    assert support.data_version(tmp_path) != before - 10


def test_app_support_imports_neither_streamlit_nor_tensorflow():
    code = (
        "import sys, portrait_core.app_support; "
        "print('streamlit' in sys.modules, 'tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT
    )
    assert out.stdout.split() == ["False", "False"]
