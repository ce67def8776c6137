"""Predict in a real browser: upload a photo, wait for the four labels and their overlays.

Uses the shipped default model (artifacts/default): the server's runs folder is empty.
"""

from __future__ import annotations

import pytest
from PIL import Image

pytest.register_assert_rewrite("browser")

from browser import assert_no_exception, open_page, screenshot, wait_idle  # noqa: E402

pytest_plugins = ("browser",)

PREDICTION_MS = 180_000  # the first prediction imports TensorFlow and loads the model


def test_upload_a_photo_and_see_four_labels_with_overlays(app_server, page, browser_data, tmp_path):
    face = Image.open(browser_data / "1.png").convert("RGB")
    photo = Image.new("RGB", (1024, 768), (60, 70, 80))
    photo.paste(face.resize((700, 700)), (162, 34))
    upload = tmp_path / "portrait.jpg"
    photo.save(upload, quality=90)

    open_page(page, app_server, "predict")
    page.get_by_role("heading", name="Predict", level=1).wait_for()
    page.locator("input[type=file]").set_input_files(str(upload))
    page.get_by_text("Hairstyle:").first.wait_for(timeout=PREDICTION_MS)
    wait_idle(page, PREDICTION_MS)
    assert_no_exception(page)
    for title in ("Gender:", "Age band:", "Face shape:", "Hairstyle:"):
        assert page.get_by_text(title).count() >= 1, title
    images = page.locator("[data-testid='stImage'] img")
    assert images.count() == 5  # the photo and one overlay per attribute
    assert page.locator("[data-testid='stPlotlyChart']").count() == 4
    screenshot(page, "predict")


def test_a_bad_upload_shows_a_message_and_the_page_keeps_working(app_server, page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not a picture")
    open_page(page, app_server, "predict")
    page.locator("input[type=file]").set_input_files(str(bad))
    page.get_by_text("not an image").first.wait_for(timeout=60_000)
    assert_no_exception(page)
    screenshot(page, "predict-bad-upload")
