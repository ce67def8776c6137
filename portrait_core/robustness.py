"""Robustness: the evaluated pictures again, degraded the ways uploaded photos are, and scored.

Five fixed degradations (DEGRADATIONS), each a pure function of a uint8 H x W x 3 picture that
returns the same shape and dtype, and the same bytes every time (no random numbers at all):

- `downscale_x4`: shrunk to a quarter of its width and height and blown up again, both bilinear
  (Pillow's, which averages over the whole footprint when shrinking): a small picture blown up.
- `gaussian_blur`: Gaussian blur with a standard deviation of 1/64 of the picture's longer side
  (2 px at 128 px, 3.5 px at 224): out of focus, or shaken, by the same amount at every size.
- `jpeg_q20`: saved as JPEG at quality 20 (Pillow's default 4:2:0 chroma subsampling) and read
  back: a photo passed through a messenger or a website.
- `brightness_-30` and `brightness_+30`: every channel value times 0.7 or 1.3, rounded and clipped
  to 0..255: an under- or over-exposed photo.

Where they apply: to the photo as the model sees it, i.e. after `images.letterbox` has scaled
its longer side to the model's input size, on the photo's own area only (the black padding stays
black, as for a real degraded upload). Degrading the original file instead would make the
severity depend on each data set's picture size: a x4 shrink of a 1,000 px photo still leaves
250 px, which the letterbox then shrinks to 128 anyway, so nothing would be lost; at the model's
size each degradation removes the same detail from every data set's pictures.

`evaluate_robustness` scores a model on every degraded version of a split with the clean
metrics' own measures (accuracy, balanced accuracy) and the drop from the clean score. It needs
no TensorFlow import of its own: the model is called on numpy batches.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from portrait_core.images import letterbox, letterbox_box, open_rgb

DOWNSCALE = 4
BLUR_SIGMA_PER_SIDE = 1 / 64  # of the longer side: 2 px at 128 px
JPEG_QUALITY = 20
BRIGHTNESS = 0.30


def downscale_x4(picture: np.ndarray) -> np.ndarray:
    h, w = picture.shape[:2]
    img = Image.fromarray(picture)
    small = img.resize(
        (max(1, round(w / DOWNSCALE)), max(1, round(h / DOWNSCALE))), Image.Resampling.BILINEAR
    )
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)


def gaussian_blur(picture: np.ndarray) -> np.ndarray:
    sigma = BLUR_SIGMA_PER_SIDE * max(picture.shape[:2])
    blurred = Image.fromarray(picture).filter(ImageFilter.GaussianBlur(radius=sigma))
    return np.asarray(blurred, dtype=np.uint8)  # Pillow's radius is the standard deviation


def jpeg_q20(picture: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    with Image.open(io.BytesIO(buffer.getvalue())) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _brightness(factor: float) -> Callable[[np.ndarray], np.ndarray]:
    def change(picture: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(picture.astype(np.float32) * factor), 0, 255).astype(np.uint8)

    return change


@dataclass(frozen=True)
class Degradation:
    title: str  # for tables and pages
    apply: Callable[[np.ndarray], np.ndarray]


DEGRADATIONS: dict[str, Degradation] = {
    "downscale_x4": Degradation("down-scaled x4 and back up", downscale_x4),
    "gaussian_blur": Degradation("Gaussian blur (sigma = side / 64)", gaussian_blur),
    "jpeg_q20": Degradation("JPEG quality 20", jpeg_q20),
    "brightness_-30": Degradation("brightness -30 %", _brightness(1 - BRIGHTNESS)),
    "brightness_+30": Degradation("brightness +30 %", _brightness(1 + BRIGHTNESS)),
}


def degrade(name: str, picture: np.ndarray) -> np.ndarray:
    """One named degradation of a uint8 H x W x 3 picture (a new array, same shape and dtype)."""
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; known: {', '.join(DEGRADATIONS)}")
    if picture.dtype != np.uint8 or picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(
            f"a degradation takes uint8 H x W x 3, not {picture.dtype} {picture.shape}"
        )
    out = DEGRADATIONS[name].apply(np.ascontiguousarray(picture))
    assert out.shape == picture.shape and out.dtype == np.uint8
    return out


def degraded_squares(path, image_size: int) -> dict[str, np.ndarray]:
    """{degradation: uint8 square}: one file letterboxed to the model's input, its photo area
    degraded each way, the padding left black."""
    photo = open_rgb(path)
    square = letterbox(photo, image_size)
    left, top, w, h = letterbox_box(*photo.size, image_size)
    area = square[top : top + h, left : left + w]
    out = {}
    for name in DEGRADATIONS:
        version = square.copy()
        version[top : top + h, left : left + w] = degrade(name, area)
        out[name] = version
    return out


def _scores(y_true: np.ndarray, probs: np.ndarray, clean: dict) -> dict:
    keep = y_true >= 0
    if not keep.any():
        return {"n": 0}
    y, pred = y_true[keep], probs[keep].argmax(axis=1)
    accuracy = float(accuracy_score(y, pred))
    balanced = float(balanced_accuracy_score(y, pred))
    return {
        "n": int(keep.sum()),
        "accuracy": accuracy,
        "balanced_accuracy": balanced,
        # clean minus degraded: positive = worse on the degraded pictures
        "accuracy_drop": float(clean["accuracy"]) - accuracy,
        "balanced_accuracy_drop": float(clean["balanced_accuracy"]) - balanced,
    }


def evaluate_robustness(
    model,
    paths,
    codes: dict[str, np.ndarray],
    image_size: int,
    clean: dict[str, dict],
    split: str = "test",
    batch_size: int = 32,
) -> dict:
    """metrics.json's `robustness` section: every degradation of the pictures in `paths`,
    scored per head against `clean` (evaluate_model's per-attribute entries, same pictures).

    Each file is decoded once per batch and all its degraded versions go through the model in
    one call: the cost is about five more passes of the model over the split.
    """
    started = time.perf_counter()
    heads = list(model.output_names)
    outputs: dict[str, dict[str, list[np.ndarray]]] = {
        name: {a: [] for a in heads} for name in DEGRADATIONS
    }
    for begin in range(0, len(paths), batch_size):
        versions = [degraded_squares(p, image_size) for p in paths[begin : begin + batch_size]]
        stacked = np.concatenate(
            [np.stack([v[name] for v in versions]) for name in DEGRADATIONS]
        ).astype(np.float32)
        predicted = model(stacked, training=False)
        for a in heads:
            per_version = np.split(np.asarray(predicted[a]), len(DEGRADATIONS))
            for name, probs in zip(DEGRADATIONS, per_version):
                outputs[name][a].append(probs)
    degradations = {}
    for name, degradation in DEGRADATIONS.items():
        attributes = {}
        for a in heads:
            if not clean.get(a, {}).get("n"):
                attributes[a] = {"n": 0}
                continue
            attributes[a] = _scores(
                np.asarray(codes[a]), np.concatenate(outputs[name][a]), clean[a]
            )
        degradations[name] = {"title": degradation.title, "attributes": attributes}
    return {
        "split": split,
        "applied_to": "the photo at the model's input size, inside its letterbox (padding stays "
        "black)",
        "n_images": len(paths),
        "seconds": round(time.perf_counter() - started, 3),
        "degradations": degradations,
    }
