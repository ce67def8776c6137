"""The committed default model (artifacts/default): its recorded test metrics, and the same bars
on synthetic pictures it has never seen, through the public predict API."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from portrait_core import load_predictor
from portrait_core.data.formats import load_dataset
from portrait_core.images import open_rgb
from portrait_core.paths import DEFAULT_MODEL
from portrait_core.robustness import DEGRADATIONS
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES
from portrait_core.synth import generate

# Issue 3's bars on the synthetic test split: (metric, at least).
BARS = {
    "gender": ("accuracy", 0.95),
    "face_shape": ("accuracy", 0.95),
    "age": ("balanced_accuracy", 0.90),
    "hairstyle": ("balanced_accuracy", 0.90),
}
FRESH_N = 2000  # fresh pictures in the default proportions: about 40 balding ones
ROBUST_DROP = 0.05  # issue 11: a degraded score within this of the clean one
FRESH_MARGIN = 0.02  # a fresh sample may fall this far under a bar by chance, no further


def test_the_recorded_test_metrics_meet_the_bars():
    metrics = json.loads((DEFAULT_MODEL / "metrics.json").read_text())["attributes"]
    config = json.loads((DEFAULT_MODEL / "config.json").read_text())
    assert config["attributes"] == list(ATTRIBUTE_KEYS)
    for attr, (metric, bar) in BARS.items():
        assert metrics[attr][metric] >= bar, (attr, metric, metrics[attr][metric])
        assert metrics[attr]["n"] >= 450  # measured on a real test split, not a handful
    # every class is in the split often enough for its recall (and so the balanced accuracy)
    # to mean something: one picture moves a class's recall by 0.1 at most
    for attr in ATTRIBUTE_KEYS:
        support = {c: r["support"] for c, r in metrics[attr]["per_class"].items()}
        assert min(support.values()) >= 10, (attr, support)


def test_it_stays_small_enough_to_commit():
    """Issue 11: the shipped default model stays under 20 MB, every file of it together."""
    files = [f for f in DEFAULT_MODEL.iterdir() if f.is_file()]
    assert {"model.keras", "config.json", "metrics.json", "calibration.json"} <= {
        f.name for f in files
    }
    assert sum(f.stat().st_size for f in files) < 20 * 1000 * 1000


def test_every_recorded_robustness_drop_is_within_the_bar():
    """Issue 11: on the test split degraded each way (robustness.py), every attribute's balanced
    accuracy stays within 0.05 of its clean score."""
    robustness = json.loads((DEFAULT_MODEL / "metrics.json").read_text())["robustness"]
    degradations = robustness["degradations"]
    assert set(degradations) == set(DEGRADATIONS), set(degradations)  # every one was run
    over = {
        (name, attr): round(r["balanced_accuracy_drop"], 3)
        for name, d in degradations.items()
        for attr, r in d["attributes"].items()
        if r["balanced_accuracy_drop"] > ROBUST_DROP
    }
    assert not over, over
    assert all(set(d["attributes"]) == set(ATTRIBUTE_KEYS) for d in degradations.values())


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """Pictures from a seed the default model's data never used (make data uses seed 0)."""
    folder = tmp_path_factory.mktemp("fresh")
    generate(folder, FRESH_N, seed=20261127, size=128, progress=False)
    return load_dataset(folder)


def test_it_meets_every_bar_on_fresh_synthetic_pictures(fresh):
    predictor = load_predictor(DEFAULT_MODEL)
    truth = {a: [] for a in ATTRIBUTE_KEYS}
    guess = {a: [] for a in ATTRIBUTE_KEYS}
    for row in fresh.table.itertuples():
        predicted = predictor.predict(open_rgb(row.path))
        for attr in ATTRIBUTE_KEYS:
            label = getattr(row, attr)
            if isinstance(label, str):  # a missing label is left out, as in evaluation
                truth[attr].append(ATTRIBUTES[attr].index(label))
                guess[attr].append(ATTRIBUTES[attr].index(predicted[attr]["label"]))
    scores = {}
    for attr, (metric, _) in BARS.items():
        score = (accuracy_score if metric == "accuracy" else balanced_accuracy_score)(
            np.array(truth[attr]), np.array(guess[attr])
        )
        scores[attr] = round(float(score), 3)
        assert len(truth[attr]) >= 0.9 * FRESH_N
    misses = {a: s for a, s in scores.items() if s < BARS[a][1] - FRESH_MARGIN}
    assert not misses, (misses, scores)


def test_its_cam_maps_are_never_empty(fresh):
    """The default model (small_resnet) pools its last block globally before the heads, so
    Grad-CAM's averaged gradients are HiResCAM's own and neither cancels to an empty map (the
    cnn_custom default before it read a flattened map: 41 of 60 Grad-CAM face-shape maps empty)."""
    predictor = load_predictor(DEFAULT_MODEL)
    empty = {"hirescam": 0, "gradcam": 0}
    rows = list(fresh.table.itertuples())[:20]
    for row in rows:
        photo = open_rgb(row.path)
        labels = {a: r["label"] for a, r in predictor.predict(photo).items()}
        for method in empty:
            maps = predictor.explain(photo, method, classes=labels)
            empty[method] += sum(float(m.max()) == 0.0 for m in maps.values())
    assert predictor.model_name == "small_resnet"
    assert empty == {"hirescam": 0, "gradcam": 0}, empty
