"""The Predict page under AppTest: four predictions with overlays and whether each is
calibrated, bad uploads, no model; faces found in real photos (boxes, crops, several faces, none),
what each model learnt from, its test scores, many uploads and a zip as one table and CSV."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from portrait_core import leaderboard, paths
from portrait_core.schema import ATTRIBUTE_KEYS

APP = str(paths.PROJECT / "app.py")


@pytest.fixture
def with_models(monkeypatch, tmp_path, trained_run, synthetic_small):
    runs = tmp_path / "runs"
    shutil.copytree(trained_run.path, runs / trained_run.id)
    monkeypatch.setattr(leaderboard, "RUNS", runs)
    monkeypatch.setattr(leaderboard, "DEFAULT_MODEL", tmp_path / "no-default")
    monkeypatch.setenv("PORTRAIT_LAB_DATA", str(synthetic_small))
    monkeypatch.setattr(paths, "DEFAULT_DATA", Path(synthetic_small))
    return runs


def open_predict() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/predict.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def labels_shown(at: AppTest) -> list[str]:
    return [
        m.value
        for m in at.markdown
        if m.value.startswith("**") and "** (" in m.value and "trained on" not in m.value
    ]


def image_captions(at: AppTest) -> list[str]:
    return [i.proto.imgs[0].caption for i in at.get("image")]


def upload_montage(at: AppTest, photo: Image.Image, name: str = "face.png") -> AppTest:
    """A drawn montage, labelled whole: face detection off, as the toggle's help advises."""
    at.toggle(key="faces").set_value(False).run()
    return at.file_uploader(key="uploads").set_value([(name, png(photo), "image/png")]).run()


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_upload_shows_four_predictions_with_overlays(with_models, trained_run, synthetic_small):
    at = open_predict()
    photo = Image.open(synthetic_small / "2.png")
    upload_montage(at, photo)
    assert not at.exception, [e.value for e in at.exception]
    labels = labels_shown(at)
    assert len(labels) == 4 and any("Hairstyle" in v for v in labels)
    assert len(at.get("plotly_chart")) == 4
    assert len(at.get("image")) == 6  # the photo, four overlays, the colour bar
    # the trained run has calibration.json: every head's probabilities are temperature-scaled
    temperatures = json.loads((trained_run.path / "calibration.json").read_text())["temperatures"]
    notes = [c.value for c in at.caption if "calibrated" in c.value.lower()]
    assert sorted(notes) == sorted(
        f"Calibrated on the validation split (T = {temperatures[a]:.2f})." for a in ATTRIBUTE_KEYS
    )


@pytest.mark.parametrize("kept", [["gender"], []])
def test_the_page_says_which_probabilities_are_uncalibrated(
    with_models, trained_run, synthetic_small, kept
):
    """A run trained before calibration has no calibration.json; one whose validation split
    was too small for some heads has no temperature for them."""
    stored = json.loads((trained_run.path / "calibration.json").read_text())
    (run,) = with_models.iterdir()
    if kept:
        stored["temperatures"] = {a: stored["temperatures"][a] for a in kept}
        (run / "calibration.json").write_text(json.dumps(stored))
    else:
        (run / "calibration.json").unlink()
    at = open_predict()
    photo = Image.open(synthetic_small / "2.png")
    upload_montage(at, photo)
    assert not at.exception, [e.value for e in at.exception]
    notes = [c.value for c in at.caption if "calibrated" in c.value.lower()]
    calibrated = [
        f"Calibrated on the validation split (T = {stored['temperatures'][a]:.2f})." for a in kept
    ]
    reason = (
        "Uncalibrated: too few labelled validation pictures to fit a temperature."
        if kept
        else "Uncalibrated: this model predates calibration."
    )
    assert sorted(notes) == sorted(calibrated + [reason] * (len(ATTRIBUTE_KEYS) - len(kept)))


def test_bad_upload_is_an_error_message_not_an_exception(with_models):
    at = open_predict()
    at.file_uploader(key="uploads").set_value([("notes.png", b"hello", "image/png")]).run()
    assert not at.exception
    assert any("not an image" in e.value for e in at.error)


def test_without_any_model_the_page_says_so(monkeypatch, tmp_path, synthetic_small):
    monkeypatch.setattr(leaderboard, "RUNS", tmp_path / "empty")
    monkeypatch.setattr(leaderboard, "DEFAULT_MODEL", tmp_path / "none")
    monkeypatch.setattr(paths, "DEFAULT_DATA", Path(synthetic_small))
    at = open_predict()
    assert any("No trained model" in w.value for w in at.warning)


def test_a_sample_picture_damaged_past_the_import_check_is_a_message(
    with_models, monkeypatch, tmp_path, synthetic_small
):
    """The import checks a JPEG's header only; one cut short is refused when it is opened."""
    data = tmp_path / "samples"
    data.mkdir()
    Image.open(synthetic_small / "2.png").convert("RGB").save(data / "a-good.jpg", quality=90)
    whole = io.BytesIO()
    Image.open(synthetic_small / "3.png").convert("RGB").save(whole, format="JPEG", quality=90)
    (data / "b-cut.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    (data / "labels.csv").write_text("path,gender\na-good.jpg,male\nb-cut.jpg,female\n")
    monkeypatch.setattr(paths, "DEFAULT_DATA", data / "labels.csv")
    at = open_predict()
    assert at.selectbox(key="sample").options == ["(none)", "a-good.jpg", "b-cut.jpg"]
    at.selectbox(key="sample").set_value("b-cut.jpg").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("b-cut.jpg" in e.value and "Pick another" in e.value for e in at.error)


def upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader(key="uploads").set_value([(n, d, "image/png") for n, d in files]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_real_photo_is_labelled_face_by_face_with_its_box(with_models, real_photos):
    at = open_predict()
    upload(at, ("hopper.jpg", real_photos["grace_hopper.jpg"].read_bytes()))
    assert any(c == "1 face found" for c in image_captions(at))
    assert any(m.value == "#### Face 1" for m in at.markdown)
    assert len(labels_shown(at)) == 4
    # the photo with its box, the crop, four overlays
    assert any("face 1, as cropped" in c for c in image_captions(at))
    # the trained run learnt from drawn montages only: the page says so, with a way out
    assert any("synthetic montages" in w.value and "mean little" in w.value for w in at.warning)
    # each head's own test score beside its label
    scores = [c.value for c in at.caption if "of the time on its test split" in c.value]
    assert len(scores) == 4
    # beside the labels, what their model learnt from
    assert any(
        "Gender, Age band, Face shape, Hairstyle:" in c.value
        and "160 synthetic montages" in c.value
        for c in at.caption
    )


def test_two_faces_give_two_results(with_models, real_photos):
    from test_faces import background, paste_head

    canvas = background(1200, 700, seed=1)
    astronaut = Image.open(real_photos["astronaut.png"]).convert("RGB")
    paste_head(canvas, astronaut, (760, 200), 1.0)
    paste_head(canvas, astronaut, (80, 260), 0.9)
    at = open_predict()
    upload(at, ("two.png", png(canvas)))
    assert any(c == "2 faces found" for c in image_captions(at))
    assert [m.value for m in at.markdown if m.value.startswith("####")] == [
        "#### Face 1",
        "#### Face 2",
    ]
    assert len(labels_shown(at)) == 8


def test_no_face_is_said_and_the_whole_picture_is_offered(with_models):
    from test_faces import background

    at = open_predict()
    upload(at, ("wall.png", png(background(800, 600, seed=2))))
    assert any("No face found in wall.png" in w.value for w in at.warning)
    assert labels_shown(at) == []
    at.checkbox(key="whole_wall.png").check().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(labels_shown(at)) == 4
    assert any("the whole picture" in c for c in image_captions(at))


def test_a_model_trained_on_real_portraits_gets_no_synthetic_warning(
    with_models, real_photos, trained_run
):
    (run,) = with_models.iterdir()
    config = json.loads((run / "config.json").read_text())
    config["data"].update(path="/data/aihub", format="aihub", synthetic=False)
    (run / "config.json").write_text(json.dumps(config))
    at = open_predict()
    upload(at, ("hopper.jpg", real_photos["grace_hopper.jpg"].read_bytes()))
    assert not any("synthetic" in w.value for w in at.warning)
    assert any("aihub pictures from `/data/aihub`" in m.value for m in at.markdown)


def test_many_uploads_and_a_zip_make_one_table_and_a_csv(with_models, real_photos, synthetic_small):
    import zipfile

    from test_faces import background

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("set/a.png", png(background(300, 300, seed=5)))
        z.writestr("set/b.jpg", real_photos["astronaut.png"].read_bytes())
        z.writestr("__MACOSX/._a.png", b"junk")
        z.writestr("set/notes.txt", b"not a picture")
    at = open_predict()
    upload(
        at,
        ("hopper.jpg", real_photos["grace_hopper.jpg"].read_bytes()),
        ("bad.png", b"hello"),
        ("batch.zip", buffer.getvalue()),
    )
    (table,) = at.dataframe
    frame = table.value
    assert list(frame["file"]) == [
        "hopper.jpg",
        "bad.png",
        "batch.zip/set/a.png",
        "batch.zip/set/b.jpg",
    ]
    assert frame["error"].tolist()[1].startswith("bad.png is not an image")
    assert frame["error"].tolist()[2] == "no face found"
    assert frame["picture"].str.startswith("data:image/jpeg;base64,").tolist() == [
        True,
        False,
        True,
        True,
    ]
    assert (
        set(frame["gender"].dropna()) <= {"male", "female"} and frame["gender"].notna().sum() == 2
    )
    assert at.selectbox(key="detail").options == [
        "hopper.jpg",
        "batch.zip/set/a.png",
        "batch.zip/set/b.jpg",
    ]
    assert at.get("download_button")


def test_a_damaged_zip_is_a_message(with_models):
    at = open_predict()
    upload(at, ("photos.zip", b"PK\x03\x04 not really"))
    assert any("photos.zip is not a readable zip file" in e.value for e in at.error)


def test_the_default_explanation_is_the_models_most_faithful_method(with_models, synthetic_small):
    from portrait_core.faithfulness import most_faithful

    (run,) = with_models.iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    best = most_faithful(metrics)
    assert best is not None  # training measured it
    at = open_predict()
    assert at.selectbox(key="method").value == "most faithful"
    upload_montage(at, Image.open(synthetic_small / "2.png"))
    overlays = [c for c in image_captions(at) if c.endswith(("for gender", "for age"))]
    assert overlays == [f"{best} for gender", f"{best} for age"]
    # a model whose faithfulness was not measured: its first method, and the page says so
    del metrics["faithfulness"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    at = open_predict()
    upload_montage(at, Image.open(synthetic_small / "2.png"))
    assert any(c.startswith("hirescam for") for c in image_captions(at))
    assert any("faithfulness not measured" in c.value for c in at.caption)


def test_methods_side_by_side_for_one_attribute(with_models, synthetic_small):
    at = open_predict()
    at.toggle(key="compare_methods").set_value(True).run()
    upload_montage(at, Image.open(synthetic_small / "2.png"))
    at.selectbox(key="methods_attr_face.png_0").set_value("hairstyle").run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c.split(" (")[0] for c in image_captions(at)]
    assert captions[-5:] == ["hirescam", "gradcam", "gradcam++", "scorecam", "saliency"]
    assert sum("(most faithful)" in c for c in image_captions(at)) == 1
