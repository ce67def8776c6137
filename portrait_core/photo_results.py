"""What Predict shows for a photo: the faces in it, each labelled by the model chosen per head,
and the photos of an upload batch as one table (with thumbnails) and one CSV.

Streamlit-free and TensorFlow-free by itself (it drives Predictor objects it is given), so the
page stays layout and the numbers are tested without a browser.
"""

from __future__ import annotations

import base64
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pandas as pd
from PIL import Image

from portrait_core.faces import Face
from portrait_core.images import IMAGE_SUFFIXES
from portrait_core.schema import ATTRIBUTE_KEYS

# A zip of photos: enough for a class's worth of portraits, bounded so that one upload cannot
# make the server unpack gigabytes (a "zip bomb" declares small and inflates large).
ZIP_MAX_FILES = 500
ZIP_MAX_BYTES = 512 * 1024 * 1024
THUMB_PX = 96


@dataclass
class Subject:
    """One labelled thing in a photo: a detected face, or the whole picture (face is None)."""

    face: Face | None
    number: int | None  # 1, 2, ... as drawn on the photo; None for the whole picture
    pictures: dict[str, Image.Image] = field(default_factory=dict)  # model path -> its crop
    labels: dict[str, dict] = field(default_factory=dict)  # attribute -> Predictor result


def subjects(photo: Image.Image, faces: list[Face] | None) -> list[Subject]:
    """The faces found (numbered from 1), or the whole picture when faces is None."""
    if faces is None:
        return [Subject(None, None)]
    return [Subject(face, n) for n, face in enumerate(faces, start=1)]


def label_subjects(photo: Image.Image, found: list[Subject], predictors: dict, by_model: dict):
    """Fill each subject's crop and labels. predictors: {model path: Predictor}; by_model:
    {model path: [attributes it answers]}. Each model crops in its own training framing."""
    for subject in found:
        for path, attrs in by_model.items():
            predictor = predictors[path]
            picture = photo if subject.face is None else predictor.crop(photo, subject.face)
            subject.pictures[path] = picture
            result = predictor.predict(picture)
            for attr in attrs:
                subject.labels[attr] = result[attr]
    return found


def result_rows(name: str, found: list[Subject], error: str | None = None) -> list[dict]:
    """CSV rows: file, face, box, then each head's label and probability."""
    if error is not None:
        return [{"file": name, "face": None, "error": error}]
    if not found:
        return [{"file": name, "face": 0, "error": "no face found"}]
    rows = []
    for s in found:
        row = {
            "file": name,
            "face": s.number,
            "face_box": " ".join(map(str, s.face.box)) if s.face else "",
            "error": "",
        }
        for attr in ATTRIBUTE_KEYS:
            if attr in s.labels:
                r = s.labels[attr]
                row[attr] = r["label"]
                row[f"{attr}_probability"] = round(r["probs"][r["label"]], 4)
        rows.append(row)
    return rows


def thumbnail_url(picture: Image.Image, px: int = THUMB_PX) -> str:
    """A small JPEG as a data: URL, for st.column_config.ImageColumn."""
    thumb = picture.convert("RGB").copy()
    thumb.thumbnail((px, px))
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def results_table(rows: list[dict], thumbs: list[str | None] | None = None) -> pd.DataFrame:
    """The rows as a table in a fixed column order (thumbnail first where given)."""
    table = pd.DataFrame(rows)
    cols = ["file", "face", "face_box", "error"]
    for attr in ATTRIBUTE_KEYS:
        cols += [c for c in (attr, f"{attr}_probability") if c in table.columns]
    table = table.reindex(columns=[c for c in cols if c in table.columns])
    if thumbs is not None:
        table.insert(0, "picture", thumbs)
    return table


def pictures_in_zip(data: bytes, name: str = "upload.zip") -> list[tuple[str, bytes]]:
    """(name, bytes) of each picture in a zip, by suffix, skipping folders and hidden files
    (macOS adds __MACOSX/ and ._ files). Raises ValueError naming the problem for a damaged
    zip, one with no pictures, or one over ZIP_MAX_FILES pictures or ZIP_MAX_BYTES unpacked."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"{name} is not a readable zip file ({exc})") from None
    chosen = []
    for entry in entries:
        parts = PurePosixPath(entry.filename).parts
        if entry.is_dir() or any(p.startswith((".", "__MACOSX")) for p in parts):
            continue
        if PurePosixPath(entry.filename).suffix.lower() in IMAGE_SUFFIXES:
            chosen.append(entry)
    if not chosen:
        raise ValueError(f"{name} holds no pictures ({', '.join(IMAGE_SUFFIXES)})")
    if len(chosen) > ZIP_MAX_FILES:
        raise ValueError(
            f"{name} holds {len(chosen)} pictures, over the {ZIP_MAX_FILES} one upload may "
            "hold: split it, or use `python -m portrait_core predict FOLDER --csv`"
        )
    total = sum(e.file_size for e in chosen)
    if total > ZIP_MAX_BYTES:
        raise ValueError(
            f"{name} unpacks to {total / 1e6:.0f} MB, over {ZIP_MAX_BYTES / 1e6:.0f} MB: split it"
        )
    out = []
    for entry in chosen:
        try:
            out.append((entry.filename, archive.read(entry)))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            out.append((entry.filename, f"cannot be unpacked ({exc})".encode()))
    return out
