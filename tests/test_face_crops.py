"""Training on uncropped photos (`train --faces`): each picture cut down to its face once, the
crops cached beside the split file, pictures without a face left out and counted."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from test_faces import background, paste_head

from portrait_core.data import face_crops as fc
from portrait_core.data.formats import load_dataset
from portrait_core.data.split import load_or_make_split
from portrait_core.faces import detect_faces

N_ONE = 18  # photos with one face


@pytest.fixture(scope="module")
def photos(tmp_path_factory, real_photos):
    """A CSV manifest of uncropped photos: 18 with one face somewhere, one with two, two
    with none; gender labels alternate."""
    root = tmp_path_factory.mktemp("uncropped")
    astronaut = Image.open(real_photos["astronaut.png"]).convert("RGB")
    rng = np.random.default_rng(0)
    rows = ["path,gender"]
    for i in range(N_ONE):
        canvas = background(480, 360, seed=10 + i)
        scale = rng.uniform(0.6, 1.0)
        at = (int(rng.integers(0, 480 - 180 * scale)), int(rng.integers(0, 360 - 200 * scale)))
        paste_head(canvas, astronaut, at, scale)
        canvas.save(root / f"one{i:02d}.jpg", quality=92)
        rows.append(f"one{i:02d}.jpg,{'male' if i % 2 else 'female'}")
    canvas = background(900, 400, seed=5)
    paste_head(canvas, astronaut, (40, 60), 0.8)
    paste_head(canvas, astronaut, (500, 40), 1.2)
    canvas.save(root / "two.jpg", quality=92)
    rows.append("two.jpg,female")
    for i in range(2):
        background(480, 360, seed=50 + i).save(root / f"none{i}.jpg", quality=92)
        rows.append(f"none{i}.jpg,male")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_each_picture_becomes_its_faces_crop_and_the_report_counts_the_rest(photos):
    dataset = load_dataset(photos)
    splits, split_path = load_or_make_split(dataset)
    cropped, kept = fc.face_crops(dataset, splits, split_path, progress=False)
    assert len(cropped) == len(kept) == N_ONE + 1
    report = cropped.report
    assert report.skipped[fc.NO_FACE] == 2 and report.noted[fc.SEVERAL_FACES] == 1
    assert sorted(os.path.basename(e) for e in report.examples[fc.NO_FACE]) == [
        "none0.jpg",
        "none1.jpg",
    ]
    for path in cropped.table["path"]:
        assert os.path.dirname(path) == str(split_path.parent / "faces")
        crop = Image.open(path)
        assert crop.width == crop.height
        (face,) = detect_faces(crop)  # the face, whole, in the middle of its crop
        x, y, w, h = face.box
        assert abs(x + w / 2 - crop.width / 2) < crop.width / 6
    # labels travel with their pictures
    names = [p for p in dataset.table["path"] if "none" not in os.path.basename(p)]
    assert (
        cropped.table["gender"].tolist()
        == dataset.table.set_index("path").loc[names, "gender"].tolist()
    )
    # the two-face photo keeps its largest face: 2.4 x its 132 px height, over the 256 px cap
    # (the smaller face's crop would be 211 px)
    two = cropped.table["path"].tolist()[[os.path.basename(p) for p in names].index("two.jpg")]
    assert Image.open(two).width == fc.CROP_MAX_SIDE


def test_the_crops_are_made_once_and_again_only_for_a_changed_picture(photos, monkeypatch):
    dataset = load_dataset(photos)
    splits, split_path = load_or_make_split(dataset)
    fc.face_crops(dataset, splits, split_path, progress=False)  # the cache is filled
    calls = []
    real = fc.crop_many
    monkeypatch.setattr(fc, "crop_many", lambda s, f: calls.extend(s) or real(s, f))
    again, _ = fc.face_crops(dataset, splits, split_path, progress=False)
    assert calls == [] and len(again) == N_ONE + 1
    changed = photos / "one03.jpg"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    fc.face_crops(dataset, splits, split_path, progress=False)
    assert calls == [str(changed)]


def test_train_and_evaluate_with_faces_read_the_crops(photos, tmp_path):
    import json

    from portrait_core.cli import main

    runs = tmp_path / "runs"
    args = ["train", "--data", str(photos), "--model", "cnn_custom", "--attributes", "gender"]
    args += [
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--faces",
        "--out",
        str(runs),
    ]
    assert main(args) == 0
    (run,) = runs.iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["faces"] is True
    report = config["data"]["import_report"]
    assert report["skipped"][fc.NO_FACE] == 2 and report["noted"][fc.SEVERAL_FACES] == 1
    assert sum(config["data"]["split_sizes"].values()) == N_ONE + 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["attributes"]["gender"]["n"] == config["data"]["split_sizes"]["test"]
    assert main(["evaluate", run.name, "--out", str(runs)]) == 0
