"""Reading pictures and the letterbox: one code path for training, prediction and the app.

Everything that turns a file into model input goes through `open_rgb` then `letterbox`, so a
photo is seen by prediction exactly as the training pipeline saw the training pictures.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# A decompression-bomb guard: 50 megapixels is far above any portrait camera's output and far
# below what would exhaust memory when decoded (50 MP x 4 bytes = 200 MB).
MAX_PIXELS = 50_000_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# The decoders Pillow may use: the formats IMAGE_SUFFIXES name, whatever a file is called (a
# phone's multi-picture JPEG opens as JPEG too). Pillow knows some forty more; fuzzing found its
# DDS, BLP and SPIDER readers raising NotImplementedError and AttributeError on damaged files,
# and its EPS reader runs Ghostscript. A format we never offered need not reach them.
PIL_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
NOT_A_PICTURE = "is not an image Portrait Lab reads (PNG, JPEG, WebP or BMP)"


class BadImage(ValueError):
    """A file that cannot serve as a picture; the message names the problem for a user."""


def open_rgb(source: str | Path | bytes | BinaryIO, name: str | None = None) -> Image.Image:
    """Decode a picture fully into 8-bit RGB, upright per its EXIF orientation.

    Accepts RGB, RGBA (composited on black, like the letterbox padding), greyscale, palette,
    CMYK and 16-bit files in the PIL_FORMATS. Raises BadImage (never another exception) for a
    non-image, another format, a damaged or truncated file, or one beyond MAX_PIXELS.
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else "the upload")
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=PIL_FORMATS) as img:
                _check_size(img, label)
                img.load()  # forces the full decode, which is where truncation shows
                img = ImageOps.exif_transpose(img)
                return _to_rgb(img)
    except BadImage:
        raise
    except Exception as exc:
        raise _bad_image(exc, label) from exc


def _check_size(img: Image.Image, label: str) -> None:
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise BadImage(
            f"{label} is {width}x{height} pixels, more than the limit of "
            f"{MAX_PIXELS // 1_000_000} megapixels"
        )


def _bad_image(exc: Exception, label: str) -> BadImage:
    """The BadImage that says, for a user, why Pillow could not read a file."""
    if isinstance(exc, FileNotFoundError):
        return BadImage(f"{label} does not exist")
    if isinstance(exc, UnidentifiedImageError):
        return BadImage(f"{label} {NOT_A_PICTURE}")
    if isinstance(exc, (Image.DecompressionBombWarning, Image.DecompressionBombError)):
        # Pillow's own guard (about 89 megapixels) fires in Image.open, before ours can
        return BadImage(
            f"{label} is too large: more than the limit of {MAX_PIXELS // 1_000_000} "
            f"megapixels ({exc})"
        )
    # Anything else is damage. Pillow's readers mostly say so with OSError, SyntaxError or
    # ValueError, but nothing holds them to it (see PIL_FORMATS), and a damaged file must
    # never end a whole import or an app page with some other exception.
    return BadImage(f"{label} is damaged or truncated ({type(exc).__name__}: {exc})")


def as_rgb(image: Image.Image | str | Path | bytes, name: str | None = None) -> Image.Image:
    """A PIL image (upright per EXIF, 8-bit RGB), from a PIL image, a path or file bytes."""
    if isinstance(image, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(image))
    return open_rgb(image, name)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit integer) greyscale: scale the used range down to 8 bits.
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.size and arr.max() > 255 else 255.0
        return Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = (arr - arr.min()) / max(float(np.ptp(arr)), 1e-12) * 255.0
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")


def letterbox(img: Image.Image, size: int) -> np.ndarray:
    """Scale the longer side to `size` and pad to size x size, centred on black (uint8 HxWx3)."""
    width, height = img.size
    scale = size / max(width, height)
    new_w = max(1, round(width * scale))
    new_h = max(1, round(height * scale))
    resized = img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    top = (size - new_h) // 2
    left = (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = np.asarray(resized, dtype=np.uint8)
    return canvas


def letterbox_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """Where the photo lies inside its letterboxed square: (left, top, new_w, new_h).

    Lets an explanation computed on the square be cropped back onto the original photo.
    """
    scale = size / max(width, height)
    new_w = max(1, round(width * scale))
    new_h = max(1, round(height * scale))
    return (size - new_w) // 2, (size - new_h) // 2, new_w, new_h


def load_letterboxed(path: str | Path, size: int) -> np.ndarray:
    """File -> uint8 size x size x 3: what the training pipeline caches per picture."""
    return letterbox(open_rgb(path), size)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def check_readable(path: str | Path) -> None:
    """Cheap import-time check (header, size and, for PNG, chunk checksums): raises BadImage.

    It refuses what open_rgb would refuse from the header alone (another format, more than
    MAX_PIXELS), so such a file is counted at import instead of stopping a training run. Full
    decoding of every picture at import would cost as much as an epoch; the training pipeline
    decodes each picture once and caches it, so truncation past the checksums still surfaces
    there with the file named.
    """
    label = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=PIL_FORMATS) as img:
                _check_size(img, label)
                img.verify()
    except BadImage:
        raise
    except Exception as exc:  # PIL raises many types from verify(); all mean "unreadable"
        raise _bad_image(exc, label) from exc
