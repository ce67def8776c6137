"""Faces first: find the faces in a photo, and crop each in the framing a model was trained on.

    faces = detect_faces(photo)              # [Face(box=(x, y, w, h), confidence, keypoints)]
    crop = crop_face(photo, faces[0], framing_of(config))   # a square PIL image

Every model here learns from face-centred portraits (drawn montages, AI Hub's studio portraits,
UTKFace's chips), so a holiday photo labelled whole reads the background and the clothes. The
detector is MTCNN (the `mtcnn` package, MIT licence; its weights ship inside the wheel, so
nothing is downloaded): measured here on 2 cores it found the one face in scikit-image's
astronaut and in matplotlib's Grace Hopper at 0.99 confidence, in 0.3-0.5 s each.

The framing is measured, not assumed. Data sets frame faces differently: in UTKFace's chips the
face box (brows to chin) fills 0.97 of the picture's height, in the synthetic montages 0.40 (the
hair and the outline of the head around it). At the end of data preparation, training runs the
detector over a seeded sample of its training pictures and stores the median framing in the run's
config.json (`preprocessing.face_framing`); a face found in an uploaded photo is cropped the same
way, so the model sees a face as big, and as placed, as in training. Where too few training
pictures show a face the detector finds, HEAD_FRAMING stands in: the whole head with its hair.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

# Below 0.9 MTCNN's candidates are mostly textures (measured on the synthetic backgrounds and the
# astronaut's spacesuit: none above 0.8); the two real faces above scored 0.99.
MIN_CONFIDENCE = 0.90
# MTCNN's cost grows with the pixels it scans; a face that fills under 1/50 of a 1024 px side is
# too small to label anyway. Larger photos are scanned shrunk, their boxes scaled back.
DETECT_MAX_SIDE = 1024
# Pictures of the training split the framing is measured on: enough for a stable median
# (on utkface-dev, 24 chips gave side 1.036; on the synthetic set, 15 montages of 60 gave 2.51).
FRAMING_SAMPLE = 32
# MTCNN finds one face in every UTKFace chip but in only half the drawn montages (11 to 15 of
# 24 here): a third of the sample is enough for the median.
FRAMING_MIN_SHARE = 1 / 3
# Photos of one size per detector call in detect_faces_batch: 16 photos of 1024 px are 200 MB
# of float pixels in MTCNN's first stage.
DETECT_BATCH = 16
# MTCNN's numpy output lists the keypoints' x in this order after the box and the confidence,
# then their y in the same order (mtcnn/utils/landmarks.py).
KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, width, height in the photo's pixels
    confidence: float
    keypoints: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Framing:
    """Where a face sits in a model's square input. side: the square's side over the face box's
    height; dx, dy: the square's centre minus the face box's centre, over the side (a positive
    dy puts the face above the centre, leaving room for the neck)."""

    side: float
    dx: float = 0.0
    dy: float = 0.0
    measured_on: int = 0  # training pictures it was measured on; 0: the stand-in HEAD_FRAMING

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Framing:
        if not isinstance(data, dict):
            return HEAD_FRAMING
        try:
            framing = cls(**{k: data[k] for k in ("side", "dx", "dy", "measured_on") if k in data})
        except TypeError:
            return HEAD_FRAMING
        return framing if framing.side > 0 else HEAD_FRAMING


# The whole head and its hair (hairstyle and face shape need them): as the synthetic montages
# frame it (measured: face box 0.40 of the height, its centre 0.47 down), a little wider.
HEAD_FRAMING = Framing(side=2.4, dx=0.0, dy=0.03)


class NoFaceDetector(RuntimeError):
    """The detector could not be loaded (the mtcnn package missing or broken)."""


_detector = None
_detector_lock = threading.Lock()  # Streamlit sessions are threads: one detector, one at a time


def _get_detector():
    global _detector
    if _detector is None:
        try:
            from mtcnn import MTCNN
        except ImportError as exc:  # pragma: no cover - a broken install, said plainly
            raise NoFaceDetector(f"face detection needs the mtcnn package: {exc}") from exc
        _detector = MTCNN(device="CPU:0")
    return _detector


def _scanned(photo: Image.Image) -> tuple[np.ndarray, float] | None:
    """(the pixels MTCNN scans, their scale from the photo), or None for a sliver too thin to
    hold a face (under MTCNN's 12 px window)."""
    rgb = photo.convert("RGB")
    scale = min(1.0, DETECT_MAX_SIDE / max(rgb.size))
    if scale < 1.0:
        rgb = rgb.resize(
            (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
            Image.Resampling.BILINEAR,
        )
    pixels = np.asarray(rgb)
    return None if min(pixels.shape[:2]) < 12 else (pixels, scale)


def _face(row: np.ndarray, scale: float) -> Face:
    """One row of MTCNN's numpy output ([image, x, y, w, h, confidence, the 5 keypoints' x, then
    their y]) as a Face in the photo's own pixels."""
    x, y, w, h = (round(float(v) / scale) for v in row[1:5])
    points = {
        name: (round(float(row[6 + k]) / scale), round(float(row[11 + k]) / scale))
        for k, name in enumerate(KEYPOINTS)
    }
    return Face((max(0, x), max(0, y), w, h), float(row[5]), points)


def detect_faces_batch(
    photos, min_confidence: float = MIN_CONFIDENCE, batch: int = DETECT_BATCH
) -> list[list[Face]]:
    """detect_faces for many photos at once: one list of faces per photo, in order. Photos of
    one size go through MTCNN together (`batch` at a time), which runs each network once per
    batch instead of once per photo: 7x to 20x faster on 2 cores for 32 pictures (48 to 128 px),
    with the same boxes. Sizes are never mixed in a batch: MTCNN would pad the smaller photos,
    and the padding changes its image pyramid."""
    found: list[list[Face]] = [[] for _ in photos]
    scanned = [_scanned(photo) for photo in photos]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, item in enumerate(scanned):
        if item is not None:
            by_shape.setdefault(item[0].shape, []).append(i)
    for members in by_shape.values():
        for start in range(0, len(members), batch):
            chunk = members[start : start + batch]
            with _detector_lock:
                rows = _get_detector().detect_faces(
                    [scanned[i][0] for i in chunk], output_type="numpy"
                )
            for row in np.asarray(rows).reshape(-1, 16):
                i = chunk[int(row[0])]
                if float(row[5]) >= min_confidence:
                    found[i].append(_face(row, scanned[i][1]))
    # numbered left to right, as a reader counts them (the numbers drawn on the photo)
    return [sorted(faces, key=lambda f: (f.box[0], f.box[1])) for faces in found]


def detect_faces(photo: Image.Image, min_confidence: float = MIN_CONFIDENCE) -> list[Face]:
    """The faces MTCNN finds at `min_confidence` or above, ordered left to right as a reader
    counts them (the numbers drawn on the photo); each box in the photo's own pixels."""
    return detect_faces_batch([photo], min_confidence)[0]


def crop_box(face: Face, framing: Framing) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the square to cut around a face; it may reach past the
    photo's edges, which crop_face fills with black, like the letterbox padding."""
    x, y, w, h = face.box
    side = max(1.0, framing.side * h)
    cx = x + w / 2 + framing.dx * side
    cy = y + h / 2 + framing.dy * side
    left, top = round(cx - side / 2), round(cy - side / 2)
    return left, top, left + round(side), top + round(side)


def crop_face(photo: Image.Image, face: Face, framing: Framing) -> Image.Image:
    """The face's square crop, black beyond the photo's edges."""
    return photo.convert("RGB").crop(crop_box(face, framing))


def framing_of(config: dict) -> Framing:
    """A model's framing from its config.json; HEAD_FRAMING for runs trained before it."""
    return Framing.from_dict((config.get("preprocessing") or {}).get("face_framing"))


def measure_framing(
    paths, n: int = FRAMING_SAMPLE, seed: int = 0, min_share: float = FRAMING_MIN_SHARE
) -> Framing | None:
    """The median framing of the faces in a seeded sample of pictures (as their letterboxed
    squares place them), or None where the detector finds exactly one face in under
    `min_share` of them (drawn faces it does not know, or group photos)."""
    from portrait_core.images import BadImage, open_rgb

    paths = list(paths)
    if not paths:
        return None
    rng = np.random.default_rng(seed)
    sample = [paths[i] for i in rng.choice(len(paths), size=min(n, len(paths)), replace=False)]
    photos = []
    for path in sample:
        try:
            photos.append(open_rgb(path))
        except BadImage:
            continue
    rows = []
    for photo, faces in zip(photos, detect_faces_batch(photos)):
        if len(faces) != 1:
            continue
        x, y, w, h = faces[0].box
        side = max(photo.size)
        rows.append(
            (
                side / h,
                (photo.width / 2 - (x + w / 2)) / side,
                (photo.height / 2 - (y + h / 2)) / side,
            )
        )
    if len(rows) < max(1, min_share * len(sample)):
        return None
    side, dx, dy = np.median(np.array(rows), axis=0)
    return Framing(round(float(side), 4), round(float(dx), 4), round(float(dy), 4), len(rows))


def draw_boxes(photo: Image.Image, faces: list[Face]) -> Image.Image:
    """The photo with each face's box drawn and numbered from 1, as the results list them."""
    from PIL import ImageDraw, ImageFont

    out = photo.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 200))
    font = ImageFont.load_default(size=max(14, round(max(out.size) / 25)))
    for number, face in enumerate(faces, start=1):
        x, y, w, h = face.box
        draw.rectangle((x, y, x + w, y + h), outline=(0, 255, 90), width=width)
        label = str(number)
        left, top, right, bottom = draw.textbbox((x, y), label, font=font)
        tag = (x, max(0, y - (bottom - top) - 2 * width))
        box = draw.textbbox(tag, label, font=font)
        draw.rectangle(
            (box[0] - width, box[1] - width, box[2] + width, box[3] + width), fill=(0, 255, 90)
        )
        draw.text(tag, label, fill=(0, 0, 0), font=font)
    return out
