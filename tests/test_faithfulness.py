"""Faithfulness (deletion and insertion AUC): right on a model whose answer is known, in every
freshly trained run's metrics.json, and on the Compare page.

The toy model's score for class 1 of its one head is the amount of fine detail (a Laplacian) in
the picture's top-left corner and nothing else, so the map that points at that corner is the
faithful one: deleting those pixels first must kill the score at once, inserting them first must
restore it at once. The inverted map must do the opposite.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from portrait_core import faithfulness as fa
from portrait_core import leaderboard, paths
from portrait_core.models.catalog import CAM_METHODS
from portrait_core.training.runs import RunStore

SIZE = 24
CORNER = 8  # the decisive region: rows and columns 0..7


@pytest.fixture(scope="module")
def corner_model():
    """One softmax head, "gender": p(class 1) rises with the fine detail in the top-left corner."""
    import keras

    from portrait_core.models.layers import ZeroCentre

    inputs = keras.Input((SIZE, SIZE, 3))
    centred = ZeroCentre(name="zero_centre")(inputs)
    corner = keras.layers.Cropping2D(((0, SIZE - CORNER), (0, SIZE - CORNER)))(centred)
    detail = keras.layers.Conv2D(2, 3, use_bias=False, activation="relu", name="laplace")(corner)
    pooled = keras.layers.GlobalAveragePooling2D()(detail)
    head = keras.layers.Dense(2, activation="softmax", name="gender")(pooled)
    model = keras.Model(inputs, {"gender": head})
    laplace = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
    kernel = np.stack([laplace, -laplace], axis=-1)[:, :, None, :].repeat(3, axis=2)
    model.get_layer("laplace").set_weights([kernel])  # |Laplacian| as relu(L) + relu(-L)
    # a full checkerboard gives 12 per filter pair: logit 3 (p = 0.95); a flat corner -3 (0.05)
    model.get_layer("gender").set_weights(
        [np.array([[0.0, 0.5], [0.0, 0.5]], np.float32), np.array([0.0, -3.0], np.float32)]
    )
    model.get_layer("zero_centre").set_mean(np.full((SIZE, SIZE, 3), 127.5, np.float32))
    return model


def pictures(n: int = 3) -> np.ndarray:
    """A checkerboard in the corner, noise elsewhere (detail the model ignores)."""
    rng = np.random.default_rng(0)
    out = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)
    checker = (np.indices((CORNER, CORNER)).sum(axis=0) % 2 * 255.0)[..., None]
    out[:, :CORNER, :CORNER] = checker
    return out


RIGHT = np.zeros((SIZE, SIZE), np.float32)
RIGHT[:CORNER, :CORNER] = 1.0


class FixedMaps:
    """An Explainer stand-in: each method name draws a fixed map."""

    def __init__(self, maps: dict[str, np.ndarray]):
        self.maps = maps

    def heatmaps_many(self, squares, classes, method):
        return [{h: self.maps[method] for h in classes} for _ in squares]


def scores(model, maps: dict[str, np.ndarray], methods=None, **kw) -> dict:
    squares = pictures()
    classes = {"gender": np.ones(len(squares), int)}
    methods = methods or [*maps, fa.RANDOM]
    return fa.faithfulness_scores(model, FixedMaps(maps), squares, classes, methods, **kw)


def test_auc_is_the_trapezoid_area_over_the_fraction():
    assert fa.auc(np.ones(11)) == pytest.approx(1.0)
    assert fa.auc(np.linspace(1, 0, 17)) == pytest.approx(0.5)
    assert fa.auc(np.array([1.0, 0.0, 0.0])) == pytest.approx(0.25)


def test_ties_are_not_broken_in_reading_order():
    tie_break = np.random.default_rng(0).random((SIZE, SIZE))
    ranks = fa.pixel_ranks(np.zeros((SIZE, SIZE)), tie_break)
    first_tenth = ranks < ranks.size // 10
    assert sorted(ranks.ravel()) == list(range(ranks.size))
    assert first_tenth[: SIZE // 2].sum() < first_tenth.sum()  # not all in the top rows
    hot = fa.pixel_ranks(RIGHT, tie_break)
    assert (hot[:CORNER, :CORNER] < CORNER * CORNER).all()  # the hot pixels come first


def test_the_map_of_the_decisive_pixels_beats_its_inverse(corner_model):
    squares = pictures()
    probs = corner_model.predict_on_batch(squares)["gender"][:, 1]
    assert (probs > 0.9).all()  # the toy works as designed
    found = scores(corner_model, {"right": RIGHT, "inverted": 1.0 - RIGHT})
    right, inverted, chance = found["right"]["gender"], found["inverted"]["gender"], found["random"]
    assert right["n"] == inverted["n"] == len(squares)
    assert right["deletion_auc"] < 0.25 < 0.75 < inverted["deletion_auc"]
    assert right["insertion_auc"] > 0.75 > 0.25 > inverted["insertion_auc"]
    for entry in (right, inverted, chance["gender"]):
        for key in ("deletion_auc", "insertion_auc"):
            assert 0.0 <= entry[key] <= 1.0
    # chance lies between: random blobs hit the corner early on some pictures, late on others
    assert right["deletion_auc"] < chance["gender"]["deletion_auc"] < inverted["deletion_auc"]
    assert right["insertion_auc"] > chance["gender"]["insertion_auc"] > inverted["insertion_auc"]
    assert right["gain_over_random"] > 0.5 and inverted["gain_over_random"] < -0.5
    assert "gain_over_random" not in chance["gender"]


def test_scores_are_deterministic_and_limits_are_kept(corner_model):
    maps = {"right": RIGHT, "inverted": 1.0 - RIGHT}
    assert scores(corner_model, maps) == scores(corner_model, maps)
    assert scores(corner_model, maps, seed=1)["random"] != scores(corner_model, maps)["random"]
    limited = scores(corner_model, maps, limits={"inverted": 1})
    assert limited["inverted"]["gender"]["n"] == 1 and limited["right"]["gender"]["n"] == 3


def test_the_gain_over_random_pairs_pictures():
    """A method measured on fewer pictures (Score-CAM) is compared with chance on those."""
    aucs = {"deletion_auc": [0.1, 0.5], "insertion_auc": [0.9, 0.5]}
    chance = {"deletion_auc": [0.3, 0.6, 0.9], "insertion_auc": [0.7, 0.4, 0.1]}
    entry = fa._summary(aucs, chance)
    assert entry["n"] == 2 and entry["deletion_auc"] == pytest.approx(0.3)
    # picture 0: 0.8 - 0.4, picture 1: 0.0 - (-0.2); the third picture of chance is not used
    assert entry["gain_over_random"] == pytest.approx(0.3)
    assert "gain_over_random" not in fa._summary(aucs, None)


def test_a_failing_method_is_recorded_and_the_others_go_on(corner_model):
    class Failing(FixedMaps):
        def heatmaps_many(self, squares, classes, method):
            if method == "broken":
                raise ValueError("no conv layer")
            return super().heatmaps_many(squares, classes, method)

    squares = pictures()
    found = fa.faithfulness_scores(
        corner_model,
        Failing({"right": RIGHT}),
        squares,
        {"gender": np.ones(len(squares), int)},
        ["broken", "right"],
    )
    assert found["broken"] == {"error": "ValueError: no conv layer"}
    assert found["right"]["gender"]["n"] == len(squares)


@pytest.mark.parametrize("faithful", ["hirescam", "gradcam"])
def test_most_faithful_picks_the_method_whose_map_is_right(corner_model, faithful):
    other = "gradcam" if faithful == "hirescam" else "hirescam"
    found = scores(corner_model, {faithful: RIGHT, other: 1.0 - RIGHT})
    metrics = {"faithfulness": {"methods": found}}
    assert fa.most_faithful(metrics) == faithful
    table = fa.faithfulness_table({"run-a": metrics}, {"run-a": "toy"})
    assert table.loc[table["most faithful"], "method"].tolist() == [faithful]
    assert set(table["method"]) == {faithful, other, fa.RANDOM}
    assert (table["model"] == "toy").all() and (table["pictures"] == 3).all()


def test_most_faithful_ranks_by_the_gain_over_random_where_it_has_one():
    def entry(deletion, insertion, gain=None):
        e = {"deletion_auc": deletion, "insertion_auc": insertion, "n": 8}
        return {"gender": e if gain is None else {**e, "gain_over_random": gain}}

    # scorecam looks better in plain AUCs, measured on easier pictures; paired with chance, not
    paired = {"scorecam": entry(0.1, 0.9, 0.05), "gradcam": entry(0.3, 0.7, 0.2)}
    assert fa.most_faithful({"faithfulness": {"methods": paired}}) == "gradcam"
    unpaired = {"scorecam": entry(0.1, 0.9), "gradcam": entry(0.3, 0.7, 0.2)}
    assert fa.most_faithful({"faithfulness": {"methods": unpaired}}) == "scorecam"


def test_most_faithful_never_picks_random_and_says_none_when_not_measured():
    entry = {"gender": {"deletion_auc": 0.5, "insertion_auc": 0.5, "n": 4}}
    better = {"gender": {"deletion_auc": 0.0, "insertion_auc": 1.0, "n": 4}}
    assert fa.most_faithful({"faithfulness": {"methods": {"scorecam": entry}}}) == "scorecam"
    both = {"scorecam": entry, fa.RANDOM: better, "saliency": {"error": "x"}}
    assert fa.most_faithful({"faithfulness": {"methods": both}}) == "scorecam"
    assert fa.most_faithful({"attributes": {}}) is None
    assert fa.most_faithful(None) is None
    assert (
        fa.most_faithful({"faithfulness": {"methods": {"gradcam": {"gender": {"n": 0}}}}}) is None
    )
    assert fa.faithfulness_table({"old": {"attributes": {}}}).empty


def test_means_over_heads_or_one_head():
    entry = {
        "gender": {"deletion_auc": 0.2, "insertion_auc": 0.8, "n": 4},
        "age": {"deletion_auc": 0.4, "insertion_auc": 0.6, "n": 4},
        "hairstyle": {"deletion_auc": None, "insertion_auc": None, "n": 0},
    }
    assert fa.method_means(entry) == pytest.approx((0.3, 0.7))
    assert fa.method_means(entry, "age") == pytest.approx((0.4, 0.6))
    assert fa.method_means(entry, "hairstyle") is None


def test_training_sample_is_small_for_tiny_runs_and_bounded():
    assert fa.training_sample(24) == fa.TRAINING_MIN_SAMPLE
    assert fa.training_sample(1000) == fa.SAMPLE
    assert fa.training_sample(4 * (fa.SAMPLE - 1)) == fa.SAMPLE - 1


# --- a real run ------------------------------------------------------------------------------------
def test_a_trained_run_has_the_faithfulness_section(trained_run):
    metrics = json.loads((trained_run.path / "metrics.json").read_text())
    section = metrics["faithfulness"]
    n_test = trained_run.config["data"]["split_sizes"]["test"]
    assert section["n_images"] == fa.training_sample(n_test) and section["split"] == "test"
    # cnn_custom has a CAM layer; Score-CAM is left to `evaluate`
    assert list(section["methods"]) == [m for m in (*CAM_METHODS, fa.RANDOM) if m != "scorecam"]
    heads = trained_run.config["attributes"]
    for method, entry in section["methods"].items():
        assert set(entry) == set(heads), method
        for e in entry.values():
            expected = fa.SCORECAM_SHARE if method == "scorecam" else 1.0
            assert e["n"] == max(1, round(section["n_images"] * expected))
            assert 0.0 <= e["deletion_auc"] <= 1.0 and 0.0 <= e["insertion_auc"] <= 1.0
            assert ("gain_over_random" in e) == (method != fa.RANDOM)
    assert section["most_faithful"] == fa.most_faithful(metrics) != fa.RANDOM
    assert section["most_faithful"] in CAM_METHODS
    assert set(section["start_probability"]) == {"picture", "mean_image", "blurred"}
    assert section["seconds"] > 0


# --- Compare ---------------------------------------------------------------------------------------
@pytest.fixture
def compare_runs(monkeypatch, tmp_path, trained_run, synthetic_small):
    """A runs folder with the trained run and a copy of it from before faithfulness came in."""
    runs = tmp_path / "runs"
    monkeypatch.setattr(leaderboard, "RUNS", runs)
    monkeypatch.setattr(leaderboard, "DEFAULT_MODEL", tmp_path / "no-default")
    monkeypatch.setattr(paths, "DEFAULT_DATA", synthetic_small)
    monkeypatch.setenv("PORTRAIT_LAB_DATA", str(synthetic_small))
    shutil.copytree(trained_run.path, runs / trained_run.id)
    old_id = "20000101-000000-000_cnn_custom_older"
    shutil.copytree(trained_run.path, runs / old_id)
    metrics_file = runs / old_id / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics.pop("faithfulness")
    metrics_file.write_text(json.dumps(metrics))
    # make gradcam++ clearly the most faithful of the new run, whatever the tiny run learnt
    metrics_file = runs / trained_run.id / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    for e in metrics["faithfulness"]["methods"]["gradcam++"].values():
        e.update(deletion_auc=0.01, insertion_auc=0.99, gain_over_random=0.9)
    metrics_file.write_text(json.dumps(metrics))
    return RunStore(runs), trained_run.id, old_id


def test_compare_shows_the_faithfulness_table_and_not_measured(compare_runs):
    from streamlit.testing.v1 import AppTest

    store, new_id, old_id = compare_runs
    at = AppTest.from_file(str(paths.PROJECT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="faithfulness_runs").value == [new_id, old_id]
    (table,) = [d.value for d in at.dataframe if "deletion AUC" in d.value]
    assert set(table["run id"]) == {new_id}  # the older run has no rows ...
    captions = "\n".join(c.value for c in at.caption)
    assert f"`{old_id}`: not measured" in captions  # ... it is named as not measured
    assert list(table["method"]) == list(fa.training_methods("conv3"))  # as training measured
    assert table.loc[table["most faithful"], "method"].tolist() == ["gradcam++"]
    row = table.set_index("method").loc["gradcam++"]
    assert row["deletion AUC"] == pytest.approx(0.01)
    assert row["insertion AUC"] == pytest.approx(0.99)
    assert row["gain over random"] == pytest.approx(0.9)
    assert row["model"] == "cnn_custom"

    at.selectbox(key="faithfulness_attribute").set_value("gender").run()
    assert not at.exception
    (table,) = [d.value for d in at.dataframe if "deletion AUC" in d.value]
    expected = store.get(new_id).metrics["faithfulness"]["methods"]["hirescam"]["gender"]
    row = table.set_index("method").loc["hirescam"]
    assert row["deletion AUC"] == pytest.approx(expected["deletion_auc"])

    at.multiselect(key="faithfulness_runs").set_value([old_id]).run()
    assert not at.exception
    assert not [d for d in at.dataframe if "deletion AUC" in d.value]
    assert "not measured" in "\n".join(c.value for c in at.caption)


# --- the bench -------------------------------------------------------------------------------------
def test_the_bench_section_is_registered_and_reported():
    from bench import report
    from bench import run as bench

    assert bench.SECTIONS["faithfulness"] is bench.bench_faithfulness
    summary = {
        "hirescam": {
            "deletion_auc": 0.2,
            "insertion_auc": 0.8,
            "gain_over_random": 0.3,
            "pictures": 24,
        },
        "scorecam": {"error": "ValueError: no conv layer"},
        fa.RANDOM: {
            "deletion_auc": 0.5,
            "insertion_auc": 0.5,
            "gain_over_random": None,
            "pictures": 24,
        },
    }
    result = {
        "model": "small_resnet",
        "run_id": "r1",
        "image_size": 64,
        "n_images": 24,
        "split": "synthetic, seed 7",
        "steps": fa.STEPS,
        "seconds": 12.5,
        "most_faithful": "hirescam",
        "summary": summary,
        "start_probability": {"picture": {"gender": 0.9}, "mean_image": {"gender": 0.5}},
    }
    text = "\n".join(report.faithfulness_markdown(result, {}))
    assert "| **hirescam** (most faithful) | 0.200 | 0.800 | 0.300 | 24 |" in text
    assert "| random | 0.500 | 0.500 | n/a | 24 |" in text
    assert "| scorecam | failed: ValueError: no conv layer |" in text
    assert "12.5 s in all" in text and "on the pictures 0.900" in text
    skipped = "\n".join(report.faithfulness_markdown({"skipped": "no model"}, {}))
    assert "Skipped: no model." in skipped
