"""Heat maps as a reader sees them: smoothed to the photo's scale, a colour map whose brightness
follows the heat, an overlay that shows where the map is hot and leaves the rest of the photo
alone, and a colour bar to read it by. Pure numpy and Pillow: no model here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from portrait_core.explain import (
    DEFAULT_OPACITY,
    INFERNO,
    colour_bar,
    colourise,
    overlay,
    smooth_map,
)


def dot(height: int, width: int) -> np.ndarray:
    """A map that is cold everywhere but one pixel."""
    m = np.zeros((height, width), np.float32)
    m[height // 2, width // 3] = 1.0
    return m


def relative_luminance(rgb: np.ndarray) -> np.ndarray:
    """sRGB 0..255 -> relative luminance Y (linearised, Rec. 709 weights)."""
    c = rgb.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


@pytest.mark.parametrize("shape", [(64, 64), (600, 800)])  # the model's square, a photo
def test_smoothing_spreads_a_single_pixel_into_a_region(shape):
    smooth = smooth_map(dot(*shape))
    assert smooth.shape == shape and smooth.dtype == np.float32
    assert smooth.min() == 0.0 and smooth.max() == pytest.approx(1.0)
    warm = smooth > 0.1
    assert warm.sum() > 0.005 * smooth.size  # a region, not one pixel (30 px of 4,096 at 64)
    assert warm[shape[0] // 2, shape[1] // 3]  # centred where the pixel was


def test_smoothing_scales_with_the_picture():
    """The same map at 64 and 640 px covers the same share of the picture: sigma follows size."""
    shares = [float((smooth_map(dot(side, side)) > 0.5).mean()) for side in (64, 640)]
    assert shares[0] == pytest.approx(shares[1], rel=0.2)


def test_an_empty_map_stays_empty():
    assert not smooth_map(np.zeros((50, 70), np.float32)).any()


def test_inferno_gets_brighter_as_the_heat_rises():
    luminance = relative_luminance(INFERNO)
    assert INFERNO.shape == (256, 3) and INFERNO.dtype == np.uint8
    assert (np.diff(luminance) > 0).all()
    assert luminance[0] < 0.01 and luminance[-1] > 0.8  # near black to pale yellow
    assert colourise(np.array([[0.0, 1.0]])).tolist() == [
        [INFERNO[0].tolist(), INFERNO[-1].tolist()]
    ]


def test_the_embedded_table_is_matplotlibs_inferno():
    import matplotlib  # a dev dependency (requirements-dev.txt), installed by `make test`

    reference = matplotlib.colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255
    assert np.abs(INFERNO.astype(float) - reference).max() <= 0.5


def test_overlay_changes_the_hot_region_and_leaves_the_cold_one():
    photo = Image.new("RGB", (160, 120), (120, 140, 160))
    heat = np.zeros((120, 160), np.float32)
    heat[20:60, 20:60] = 1.0  # hot square top left; the right half is cold
    out = np.asarray(overlay(photo, heat), np.float32)
    change = np.abs(out - np.asarray(photo, np.float32)).sum(axis=-1)
    hot, cold = change[30:50, 30:50].mean(), change[:, 100:].mean()
    assert hot > 150  # plainly visible at the default opacity: 150 levels over three channels
    assert hot > 20 * max(cold, 1.0)
    assert change[:, 120:].max() == 0  # far from the heat the photo is untouched


def test_opacity_scales_the_overlay_and_zero_leaves_the_photo():
    photo = Image.new("RGB", (40, 30), (90, 90, 90))
    heat = np.ones((30, 40), np.float32)
    heat[:, :20] = 0.0
    base = np.asarray(photo, np.float32)

    def change(opacity):
        return np.abs(np.asarray(overlay(photo, heat, opacity), np.float32) - base).mean()

    assert change(0.0) == 0
    assert change(0.2) < change(0.5) < change(DEFAULT_OPACITY) < change(1.0)
    unsmoothed = np.asarray(overlay(photo, heat, smooth=False), np.float32)
    assert (unsmoothed[:, :20] == base[:, :20]).all()  # no blur: the cold half stays exact


@pytest.mark.parametrize("opacity", [-0.1, 1.5])
def test_overlay_refuses_an_opacity_outside_0_1(opacity):
    with pytest.raises(ValueError, match="opacity"):
        overlay(Image.new("RGB", (8, 8)), np.zeros((8, 8), np.float32), opacity)


def test_overlay_refuses_a_map_of_another_size():
    with pytest.raises(ValueError, match="crop it first"):
        overlay(Image.new("RGB", (8, 6)), np.zeros((8, 8), np.float32))


@pytest.mark.parametrize("size", [(256, 20), (480, 32)])
def test_colour_bar_has_the_size_asked_and_runs_cold_to_hot(size):
    bar = colour_bar(*size)
    assert isinstance(bar, Image.Image) and bar.size == size and bar.mode == "RGB"
    pixels = np.asarray(bar)
    row = relative_luminance(pixels[1])  # the top row: above the labels
    assert row[0] < 0.01 and row[-1] > 0.8 and row[size[0] // 2] < row[-1]
    left, right = pixels[:, : size[0] // 5], pixels[:, -size[0] // 5 :]
    assert (left.min(axis=-1) > 200).any()  # "low" written in light letters on the dark end
    assert (right.max(axis=-1) < 60).any()  # "high" in dark letters on the light end


def test_colour_bar_refuses_a_size_too_small_for_its_labels():
    with pytest.raises(ValueError, match="colour bar"):
        colour_bar(20, 5)
