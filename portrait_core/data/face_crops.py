"""Training on uncropped photos: each picture cut down to its face once, the crops cached.

    dataset, splits = face_crops(dataset, splits, split_path)

A data set of holiday snaps or studio shots with the person small in the frame trains a model on
backgrounds. With `train --faces` (and the Train page's toggle) every picture goes through the
face detector first (portrait_core/faces.py): the largest face is cut out with the whole head and
its hair (faces.HEAD_FRAMING) and stands in for the picture. The crops go into a `faces/` folder
beside the data's split file, with an index (`faces/index.csv`: the picture, its size and
modification time, the faces found, the crop), so the detector runs once per picture: a second
run, or `evaluate`, reads the crops. A picture that changed on disk is cropped again.

Pictures where no face is found are left out, and the import report says how many (with a few
names); pictures with several faces keep the largest, and the report counts them too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from portrait_core.data.table import Dataset, ImportReport
from portrait_core.faces import DETECT_BATCH, HEAD_FRAMING, crop_face, detect_faces_batch
from portrait_core.images import BadImage, open_rgb

CROP_MAX_SIDE = 256  # training reads at most 224 px; larger crops would only fill the disk
NO_FACE = "no face found (--faces)"
SEVERAL_FACES = "several faces: the largest kept (--faces)"
INDEX_COLUMNS = ["source", "size", "mtime_ns", "faces", "crop"]
SAVE_EVERY = 100  # pictures between index writes: an interrupted run keeps its crops


def _write_index(path: Path, rows: dict[str, dict]) -> None:
    tmp = path.with_name(path.name + ".partial")
    pd.DataFrame(list(rows.values()), columns=INDEX_COLUMNS).to_csv(tmp, index=False)
    tmp.replace(path)


def _read_index(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    try:
        frame = pd.read_csv(path, dtype={"crop": str}, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError):
        return {}  # a damaged index: crop again
    if list(frame.columns) != INDEX_COLUMNS:
        return {}
    return {r["source"]: r for r in frame.to_dict("records")}


def crop_many(sources: list[str], folder: Path) -> list[dict]:
    """Detect (in one batch: faces.detect_faces_batch) and crop these pictures; their index rows
    (faces = -1: unreadable)."""
    rows, photos = [], []
    for source in sources:
        stat = os.stat(source)
        rows.append({"source": source, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                     "crop": "", "faces": -1})  # fmt: skip
        try:
            photos.append(open_rgb(source))
        except BadImage:
            photos.append(None)
    readable = [i for i, photo in enumerate(photos) if photo is not None]
    for i, found in zip(readable, detect_faces_batch([photos[i] for i in readable])):
        rows[i]["faces"] = len(found)
        if found:
            largest = max(found, key=lambda f: f.box[2] * f.box[3])
            crop = crop_face(photos[i], largest, HEAD_FRAMING)
            if crop.width > CROP_MAX_SIDE:
                crop = crop.resize((CROP_MAX_SIDE, CROP_MAX_SIDE))
            name = hashlib.sha1(sources[i].encode("utf-8")).hexdigest()[:20] + ".png"
            crop.save(folder / name)
            rows[i]["crop"] = name
    return rows


def face_crops(
    dataset: Dataset, splits: pd.Series, split_path: Path, progress: bool = True
) -> tuple[Dataset, pd.Series]:
    """The data set with each picture replaced by its face's crop (pictures without a face left
    out), and the split of the rows kept. The report counts both kinds of picture."""
    folder = Path(split_path).parent / "faces"
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / "index.csv"
    index = _read_index(index_path)
    sources = [str(p) for p in dataset.table["path"]]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(sources), desc="finding faces", unit="img")
    stale = []
    for source in sources:
        known = index.get(source)
        try:
            stat = os.stat(source)
        except OSError:
            stat = None
        up_to_date = (
            known is not None
            and stat is not None
            and int(known["size"]) == stat.st_size
            and int(known["mtime_ns"]) == stat.st_mtime_ns
            and (not known["crop"] or (folder / known["crop"]).is_file())
        )
        if up_to_date or stat is None:
            if bar is not None:
                bar.update(1)
        else:
            stale.append(source)
    fresh = 0
    for start in range(0, len(stale), DETECT_BATCH):
        chunk = stale[start : start + DETECT_BATCH]
        for row in crop_many(chunk, folder):
            index[row["source"]] = row
        fresh += len(chunk)
        if fresh % SAVE_EVERY < len(chunk):  # every SAVE_EVERY pictures or so
            _write_index(index_path, index)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    if fresh:
        _write_index(index_path, index)

    report = ImportReport(
        format=dataset.report.format,
        n_loaded=0,
        skipped=dataset.report.skipped.copy(),
        examples={k: list(v) for k, v in dataset.report.examples.items()},
        blank_labels=dataset.report.blank_labels,
        blank_examples=dataset.report.blank_examples,
    )
    keep, crops = [], []
    for source in sources:
        row = index.get(source)
        if row is None or int(row["faces"]) < 0:
            report.skip("unreadable picture", source)
            keep.append(False)
            continue
        if int(row["faces"]) == 0:
            report.skip(NO_FACE, source)
            keep.append(False)
            continue
        if int(row["faces"]) > 1:
            report.note(SEVERAL_FACES, source)
        keep.append(True)
        crops.append(str(folder / row["crop"]))
    kept = pd.Series(keep, index=dataset.table.index)
    table = dataset.table[kept].copy()
    table["path"] = crops
    report.n_loaded = len(table)
    return (
        Dataset(root=dataset.root, table=table.reset_index(drop=True), report=report),
        splits[kept].reset_index(drop=True),
    )
