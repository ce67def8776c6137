"""Predict in a real browser: upload a real photo, see its face boxed, the four labels, the
warning that the default model learnt from drawn montages, and overlays that can be seen.

Uses the shipped default model (artifacts/default): the server's runs folder is empty.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.register_assert_rewrite("browser")

from browser import assert_no_exception, open_page, screenshot, wait_idle  # noqa: E402

pytest_plugins = ("browser",)

PREDICTION_MS = 180_000  # the first prediction imports TensorFlow and loads the model


@pytest.mark.parametrize("name", ["grace_hopper.jpg", "astronaut.png"])
def test_a_real_photo_gets_its_face_boxed_labelled_warned_and_explained(
    app_server, page, real_photos, name
):
    """The two photos of the issue: the face is found and boxed, the four labels come with a
    plain warning (the default model only saw drawn montages), and each heat map is visible."""
    open_page(page, app_server, "predict")
    page.get_by_role("heading", name="Predict", level=1).wait_for()
    page.locator("input[type=file]").set_input_files(str(real_photos[name]))
    page.get_by_text("Hairstyle:").first.wait_for(timeout=PREDICTION_MS)
    wait_idle(page, PREDICTION_MS)
    assert_no_exception(page)
    assert page.get_by_text("1 face found").count() == 1
    assert page.get_by_text("Face 1", exact=True).count() == 1
    for title in ("Gender:", "Age band:", "Face shape:", "Hairstyle:"):
        assert page.get_by_text(title).count() >= 1, title
    assert page.get_by_text("labels for real photos mean little").count() == 1
    images = page.locator("[data-testid='stImage'] img")
    assert images.count() == 7  # the photo with its box, the face's crop, 4 overlays, colour bar
    crop = _pixels(images.nth(1).screenshot())
    for i in range(2, 6):  # an overlay differs plainly from the crop it is drawn on
        overlay = _pixels(images.nth(i).screenshot())
        assert np.abs(overlay - crop).mean() > 12, i
    screenshot(page, f"predict-{name.split('.')[0]}")


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB").resize((64, 64)), np.float32)


def test_a_bad_upload_shows_a_message_and_the_page_keeps_working(app_server, page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not a picture")
    open_page(page, app_server, "predict")
    page.locator("input[type=file]").set_input_files(str(bad))
    page.get_by_text("not an image").first.wait_for(timeout=60_000)
    assert_no_exception(page)
    screenshot(page, "predict-bad-upload")
