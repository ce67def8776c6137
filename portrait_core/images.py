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


class BadImage(ValueError):
    """A file that cannot serve as a picture; the message names the problem for a user."""


def open_rgb(source: str | Path | bytes | BinaryIO, name: str | None = None) -> Image.Image:
    """Decode a picture fully into 8-bit RGB, upright per its EXIF orientation.

    Accepts RGB, RGBA (composited on black, like the letterbox padding), greyscale, palette,
    CMYK and 16-bit files. Raises BadImage for a non-image, a truncated file, or one beyond
    MAX_PIXELS.
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else "the upload")
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise BadImage(
                        f"{label} is {width}x{height} pixels, more than the limit of "
                        f"{MAX_PIXELS // 1_000_000} megapixels"
                    )
                img.load()  # forces the full decode, which is where truncation shows
                img = ImageOps.exif_transpose(img)
                return _to_rgb(img)
    except BadImage:
        raise
    except FileNotFoundError as exc:
        raise BadImage(f"{label} does not exist") from exc
    except UnidentifiedImageError as exc:
        raise BadImage(f"{label} is not an image PIL can read (png, jpg, webp, bmp)") from exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        # Pillow's own guard (about 89 megapixels) fires in Image.open, before ours can
        raise BadImage(
            f"{label} is too large: more than the limit of {MAX_PIXELS // 1_000_000} "
            f"megapixels ({exc})"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"{label} is damaged or truncated ({exc})") from exc


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
    """Cheap import-time check (header and, for PNG, chunk checksums): raises BadImage.

    Full decoding of every picture at import would cost as much as an epoch; the training
    pipeline decodes each picture once and caches it, so truncation past the checksums still
    surfaces there with the file named.
    """
    try:
        with Image.open(path) as img:
            img.verify()
    except FileNotFoundError as exc:
        raise BadImage(f"{path} does not exist") from exc
    except Exception as exc:  # PIL raises many types from verify(); all mean "unreadable"
        raise BadImage(f"{path} is not a readable image ({exc})") from exc
