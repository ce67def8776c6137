"""`predict FOLDER --csv`: one row per picture (or face), bad files as rows, resumable, the same
labels as one picture at a time; `predict --faces` on single photos."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from portrait_core.cli import main
from portrait_core.paths import DEFAULT_MODEL
from portrait_core.schema import ATTRIBUTES


@pytest.fixture(scope="module")
def folder(tmp_path_factory, synthetic_small) -> Path:
    """Five montages (two in a subfolder), a file that is not a picture, a hidden file."""
    root = tmp_path_factory.mktemp("batch") / "photos"
    (root / "sub").mkdir(parents=True)
    for i, n in enumerate((2, 3, 5)):
        shutil.copy(synthetic_small / f"{n}.png", root / f"m{i}.png")
    for i, n in enumerate((6, 7)):
        Image.open(synthetic_small / f"{n}.png").convert("RGB").save(root / "sub" / f"j{i}.jpg")
    (root / "notes.jpg").write_text("not a picture")
    (root / ".hidden.png").write_bytes(b"skipped")
    return root


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_folder_becomes_one_row_per_picture_with_every_label(folder, tmp_path, capsys):
    out = tmp_path / "labels.csv"
    assert main(["predict", str(folder), "--csv", str(out)]) == 0
    rows = read_rows(out)
    assert [Path(r["file"]).name for r in rows] == [
        "m0.png",
        "m1.png",
        "m2.png",
        "notes.jpg",
        "j0.jpg",
        "j1.jpg",
    ]
    bad = rows[3]
    assert "is not an image" in bad["error"] and bad["gender"] == ""
    for row in rows[:3] + rows[4:]:
        assert row["error"] == ""
        for attr, info in ATTRIBUTES.items():
            assert row[attr] in info.classes
            probs = [float(row[f"{attr}:{c}"]) for c in info.classes]
            assert sum(probs) == pytest.approx(1.0, abs=1e-3)  # four decimals each
            assert float(row[f"{attr}_probability"]) == max(probs)
    err = capsys.readouterr().err
    assert "6 rows for 6 pictures" in err and "1 with an error" in err
    assert "pictures: 100%" in err  # the progress bar


def test_the_batched_rows_are_what_predict_says_picture_by_picture(folder, tmp_path):
    from portrait_core import load_predictor

    out = tmp_path / "labels.csv"
    assert main(["predict", str(folder), "--csv", str(out), "--no-progress"]) == 0
    predictor = load_predictor(DEFAULT_MODEL)
    for row in read_rows(out):
        if row["error"]:
            continue
        single = predictor.predict(Image.open(row["file"]))
        for attr, result in single.items():
            assert row[attr] == result["label"], (row["file"], attr)
            for c, p in result["probs"].items():
                # the CSV keeps four decimals; batch and single passes may round differently
                assert float(row[f"{attr}:{c}"]) == pytest.approx(p, abs=1e-3)


def test_an_interrupted_csv_is_resumed_without_repeating_a_picture(folder, tmp_path):
    out = tmp_path / "labels.csv"
    assert main(["predict", str(folder), "--csv", str(out), "--no-progress"]) == 0
    whole = out.read_text(encoding="utf-8").splitlines(keepends=True)
    # interrupted after two pictures, in the middle of writing the third
    out.write_text("".join(whole[:3]) + whole[3][: len(whole[3]) // 2], encoding="utf-8")
    assert main(["predict", str(folder), "--csv", str(out), "--resume", "--no-progress"]) == 0
    again = read_rows(out)
    assert sorted(r["file"] for r in again) == sorted(r["file"] for r in read_rows_of(whole))
    assert out.read_text(encoding="utf-8").splitlines(keepends=True)[:3] == whole[:3]


def read_rows_of(lines: list[str]) -> list[dict]:
    return list(csv.DictReader(lines))


def test_an_existing_csv_is_never_overwritten_without_resume(folder, tmp_path, capsys):
    out = tmp_path / "labels.csv"
    out.write_text("precious\n")
    assert main(["predict", str(folder), "--csv", str(out)]) == 2
    assert out.read_text() == "precious\n"
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {out} exists: pass --resume to continue it, or name another file"]
    # resuming a CSV of other columns is refused too, and leaves it alone
    assert main(["predict", str(folder), "--csv", str(out), "--resume"]) == 2
    assert out.read_text() == "precious\n"


def test_an_empty_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--csv", str(tmp_path / "x.csv")]) == 2
    assert "no pictures" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_faces_in_a_folder_are_one_row_each_and_overlays_are_written(real_photos, tmp_path, folder):
    photos = tmp_path / "real"
    photos.mkdir()
    shutil.copy(real_photos["grace_hopper.jpg"], photos / "hopper.jpg")
    from test_faces import background

    background(500, 400, seed=2).save(photos / "wall.png")
    out = tmp_path / "faces.csv"
    maps = tmp_path / "maps"
    args = ["predict", str(photos), "--csv", str(out), "--faces", "--no-progress"]
    assert main([*args, "--explain", "gradcam", "--out", str(maps)]) == 0
    rows = {Path(r["file"]).name: r for r in read_rows(out)}
    hopper, wall = rows["hopper.jpg"], rows["wall.png"]
    assert hopper["face"] == "1" and float(hopper["face_confidence"]) > 0.9
    x, y, w, h = map(int, hopper["face_box"].split())
    assert 150 < x + w / 2 < 380 and 100 < y + h / 2 < 360  # her face, not the flag
    for attr in ATTRIBUTES:
        assert Path(hopper[f"{attr}_overlay"]).is_file()
    assert wall["error"] == "no face found" and wall["gender"] == ""


def test_predict_faces_on_one_photo_labels_each_face(real_photos, capsys):
    assert main(["predict", str(real_photos["astronaut.png"]), "--faces", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    (faces,) = result.values()
    (face,) = faces["faces"]
    assert face["face"] == 1 and face["confidence"] > 0.9
    assert set(face["labels"]) == set(ATTRIBUTES)
