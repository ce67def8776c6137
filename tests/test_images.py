"""Reading pictures (every mode, EXIF, bad files) and the letterbox geometry."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from portrait_core import images
from portrait_core.images import BadImage, letterbox, letterbox_box, open_rgb


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [(200, 100, 64), (100, 200, 64), (50, 50, 128), (1024, 768, 128), (3, 300, 32)],
)
def test_letterbox_scales_longer_side_and_centres_on_black(width, height, size):
    img = Image.new("RGB", (width, height), (200, 100, 50))
    out = letterbox(img, size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    left, top, new_w, new_h = letterbox_box(width, height, size)
    assert max(new_w, new_h) == size
    assert abs(new_w / new_h - width / height) < 0.1 * max(1, width / height)
    inside = out[top : top + new_h, left : left + new_w]
    assert (inside == [200, 100, 50]).all()
    mask = np.ones((size, size), bool)
    mask[top : top + new_h, left : left + new_w] = False
    assert (out[mask] == 0).all()
    # centred: padding on both sides differs by at most one pixel
    assert abs(left - (size - left - new_w)) <= 1 and abs(top - (size - top - new_h)) <= 1


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK", "I;16", "LA", "1"])
def test_open_rgb_accepts_every_mode(mode):
    base = Image.new("RGB", (40, 30), (120, 60, 30))
    if mode == "I;16":
        arr = np.full((30, 40), 40000, np.uint16)
        arr[:, :20] = 10000
        img = Image.fromarray(arr)  # uint16 -> mode I;16
        data = png_bytes(img)
    elif mode == "CMYK":
        data = png_bytes(base.convert("CMYK"), "JPEG")
    else:
        data = png_bytes(base.convert(mode))
    out = open_rgb(data)
    assert out.mode == "RGB" and out.size == (40, 30)
    arr = np.asarray(out)
    if mode == "I;16":  # the 16-bit range is kept, scaled: the dim half stays darker
        assert arr[:, :20].mean() < arr[:, 20:].mean() - 100
    elif mode not in ("1",):
        assert arr.mean() > 20  # not a black picture


def test_rgba_is_composited_on_black():
    img = Image.new("RGBA", (10, 10), (255, 255, 255, 0))
    assert np.asarray(open_rgb(png_bytes(img))).max() == 0


def test_exif_orientation_is_honoured():
    img = Image.new("RGB", (60, 20), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = png_bytes(img, "JPEG", exif=exif.tobytes(), quality=95)
    out = open_rgb(data)
    assert out.size == (20, 60)  # portrait after rotation
    arr = np.asarray(out).astype(int)
    assert arr[:8, :, 0].mean() > 150  # the stripe is now on top


def test_not_an_image_is_rejected_with_a_clear_message():
    with pytest.raises(BadImage, match="not an image"):
        open_rgb(b"hello, this is text", name="notes.txt")


def test_truncated_image_is_rejected():
    data = png_bytes(Image.effect_noise((200, 200), 50).convert("RGB"))
    with pytest.raises(BadImage, match="damaged or truncated"):
        open_rgb(data[: len(data) // 2], name="half.png")


def test_pixel_limit(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(BadImage, match="megapixels|limit"):
        open_rgb(png_bytes(Image.new("RGB", (20, 20))), name="big.png")


@pytest.mark.parametrize("side", [40, 50])  # Pillow warns past its limit, refuses past twice it
def test_pillows_own_pixel_guard_is_reported_as_the_pixel_limit(monkeypatch, side):
    """Pillow checks its limit (about 89 megapixels) inside Image.open, before ours."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(BadImage, match="too large: more than the limit of 50 megapixels"):
        open_rgb(png_bytes(Image.new("RGB", (side, side))), name="huge.png")


def test_missing_file(tmp_path):
    with pytest.raises(BadImage, match="does not exist"):
        open_rgb(tmp_path / "nope.png")
