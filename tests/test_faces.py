"""Faces first (portrait_core/faces.py): real faces are found where they are, crops keep the
head in the model's framing, a picture without a face says so, several faces give several."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ASTRONAUT_FACE
from PIL import Image

from portrait_core.faces import (
    HEAD_FRAMING,
    Face,
    Framing,
    crop_box,
    crop_face,
    detect_faces,
    detect_faces_batch,
    draw_boxes,
    framing_of,
    measure_framing,
)


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def background(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth coloured noise: texture for a detector to be fooled by, no face."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 40 + 1, width // 40 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)


def paste_head(canvas: Image.Image, astronaut: Image.Image, at: tuple[int, int], scale: float):
    """Paste the astronaut's head (a margin around the hand-marked face) at `at`, scaled;
    return the face's true box in the canvas."""
    fx, fy, fw, fh = ASTRONAUT_FACE
    left, top, right, bottom = fx - 45, fy - 50, fx + fw + 45, fy + fh + 40
    head = astronaut.crop((left, top, right, bottom))
    head = head.resize((round(head.width * scale), round(head.height * scale)))
    canvas.paste(head, at)
    return (
        at[0] + (fx - left) * scale,
        at[1] + (fy - top) * scale,
        fw * scale,
        fh * scale,
    )


@pytest.fixture(scope="module")
def astronaut(real_photos):
    return Image.open(real_photos["astronaut.png"]).convert("RGB")


@pytest.mark.parametrize("at,scale", [((700, 420), 1.0), ((150, 90), 1.7)])
def test_a_face_pasted_on_a_large_background_is_found_where_it_is(astronaut, at, scale):
    canvas = background(1400, 1000)
    truth = paste_head(canvas, astronaut, at, scale)
    faces = detect_faces(canvas)
    assert len(faces) == 1
    assert iou(faces[0].box, truth) >= 0.5, (faces[0].box, truth)
    assert faces[0].confidence >= 0.9


def test_two_pasted_faces_give_two_faces_numbered_left_to_right(astronaut, real_photos):
    canvas = background(1200, 700, seed=1)
    right = paste_head(canvas, astronaut, (760, 200), 1.0)
    left = paste_head(canvas, astronaut, (80, 260), 0.9)
    faces = detect_faces(canvas)
    assert [round(iou(f.box, t), 1) >= 0.5 for f, t in zip(faces, (left, right))] == [True, True]


def test_no_face_in_a_picture_without_one():
    assert detect_faces(background(900, 600, seed=2)) == []
    assert detect_faces(Image.new("RGB", (8, 8))) == []  # too small to hold a face


def test_the_real_photos_each_show_one_face(real_photos):
    for path in real_photos.values():
        assert len(detect_faces(Image.open(path))) == 1


def test_a_large_photo_is_scanned_shrunk_and_its_box_scaled_back(astronaut):
    big = background(2000, 2000, seed=4)
    truth = paste_head(big, astronaut, (900, 700), 2.5)  # a 2000 px photo: scanned at 1024
    (face,) = detect_faces(big)
    assert iou(face.box, truth) >= 0.5


def test_many_photos_at_once_find_what_each_alone_finds(astronaut, monkeypatch):
    """Photos of two sizes, a faceless one, a sliver and the astronaut, in batches of 2: each
    photo's faces are those it gets alone (boxes to the pixel, keypoints, confidence to float
    rounding), in the photos' order."""
    import portrait_core.faces as faces_module

    photos = []
    for k in range(3):  # 400 x 300, two of them with a face
        canvas = background(400, 300, seed=10 + k)
        if k != 1:
            paste_head(canvas, astronaut, (40 + 80 * k, 20), 0.8)
        photos.append(canvas)
    photos += [Image.new("RGB", (8, 300)), astronaut, background(512, 512, seed=14)]
    alone = [detect_faces(photo) for photo in photos]
    calls = []
    real = faces_module._get_detector

    def counted():
        detector = real()

        class Counting:
            def detect_faces(self, images, **kw):
                calls.append(len(images))
                return detector.detect_faces(images, **kw)

        return Counting()

    monkeypatch.setattr(faces_module, "_get_detector", counted)
    together = detect_faces_batch(photos, batch=2)
    # 400 x 300: a batch of 2 and one of 1; the two 512 x 512 together; the sliver never scanned
    assert sorted(calls) == [1, 2, 2]
    assert [len(f) for f in together] == [1, 0, 1, 0, 1, 0]
    for one, many in zip(alone, together):
        assert [(f.box, f.keypoints) for f in one] == [(f.box, f.keypoints) for f in many]
        assert [f.confidence for f in one] == pytest.approx([f.confidence for f in many], abs=1e-4)


def test_the_crop_keeps_the_head_in_the_models_framing():
    face = Face((100, 200, 40, 50), 0.99)
    framing = Framing(side=2.0, dx=0.0, dy=0.1)
    left, top, right, bottom = crop_box(face, framing)
    assert right - left == bottom - top == 100  # 2 x the face's height
    # the face box's centre sits 0.1 of the side above the crop's centre
    assert (left + right) / 2 == pytest.approx(120)
    assert (top + bottom) / 2 == pytest.approx(225 + 10)


def test_a_crop_past_the_photos_edge_is_padded_black():
    photo = Image.new("RGB", (100, 100), (200, 200, 200))
    crop = crop_face(photo, Face((0, 0, 30, 30), 0.99), HEAD_FRAMING)
    pixels = np.asarray(crop)
    assert crop.width == crop.height == round(HEAD_FRAMING.side * 30)
    assert pixels[0, 0].tolist() == [0, 0, 0] and pixels[-1, -1].tolist() == [200, 200, 200]


def test_framing_is_measured_on_face_chips_and_reproduces_them(astronaut, tmp_path):
    """Chips cut in a known framing measure back as that framing; a folder of faceless
    pictures measures as None (training then falls back to HEAD_FRAMING)."""
    fx, fy, fw, fh = ASTRONAUT_FACE
    paths = []
    for i, (side, shift) in enumerate([(1.6, 0), (1.6, 4), (1.6, -4)]):
        s = side * fh
        cx, cy = fx + fw / 2 + shift, fy + fh / 2
        chip = astronaut.crop(
            (round(cx - s / 2), round(cy - s / 2), round(cx + s / 2), round(cy + s / 2))
        )
        paths.append(tmp_path / f"{i}.png")
        chip.save(paths[-1])
    framing = measure_framing(paths)
    assert framing is not None and framing.measured_on == 3
    # the detector's box is not the hand-marked one: within a fifth of the side
    assert framing.side == pytest.approx(1.6 * fh / detect_faces(astronaut)[0].box[3], rel=0.2)
    assert abs(framing.dx) < 0.1 and abs(framing.dy) < 0.1
    blank = []
    for i in range(3):
        blank.append(tmp_path / f"blank{i}.png")
        background(64, 64, seed=i).save(blank[-1])
    assert measure_framing(blank) is None


def test_a_models_framing_is_read_from_its_config_with_a_fallback():
    stored = {"preprocessing": {"face_framing": Framing(1.1, 0.02, 0.01, 20).to_dict()}}
    assert framing_of(stored) == Framing(1.1, 0.02, 0.01, 20)
    assert framing_of({}) == HEAD_FRAMING
    assert framing_of({"preprocessing": {"face_framing": {"side": -1}}}) == HEAD_FRAMING


def test_boxes_are_drawn_and_numbered(astronaut):
    faces = [Face((50, 60, 80, 100), 0.99), Face((300, 60, 80, 100), 0.98)]
    drawn = np.asarray(draw_boxes(astronaut, faces)).astype(int)
    plain = np.asarray(astronaut).astype(int)
    changed = np.abs(drawn - plain).sum(axis=2) > 0
    assert changed[60:160, 50].any() and changed[60:160, 300].any()  # both left edges drawn
    assert not changed[300:, :].any()  # nothing drawn away from the boxes
