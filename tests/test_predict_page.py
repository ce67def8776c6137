"""The Predict page under AppTest: four predictions with overlays and whether each is
calibrated, bad uploads, no model."""

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


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_upload_shows_four_predictions_with_overlays(with_models, trained_run, synthetic_small):
    at = open_predict()
    photo = Image.open(synthetic_small / "2.png")
    at.file_uploader(key="uploads").set_value([("face.png", png(photo), "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [m.value for m in at.markdown if m.value.startswith("**") and ":" in m.value]
    assert len(labels) == 4 and any("Hairstyle" in v for v in labels)
    assert len(at.get("plotly_chart")) == 4
    assert len(at.get("image")) == 5  # the photo plus four overlays
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
    at.file_uploader(key="uploads").set_value([("face.png", png(photo), "image/png")]).run()
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
