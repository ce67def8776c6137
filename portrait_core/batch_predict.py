"""Many photos at once: a folder (or a list of files) labelled into one CSV, resumable.

    python -m portrait_core predict photos/ --csv labels.csv [--faces] [--explain hirescam --out maps/]

One row per picture, or per face with --faces (a picture with no face gets one row saying so).
Each row has every head's label, its probability, and each class's probability. A file that is
not a picture becomes a row with its error, and the run goes on. Rows are appended as each
picture is finished, so an interrupted run keeps what it wrote; `--resume` skips the pictures
already in the CSV and continues the file.

Pictures are decoded and letterboxed in parallel by tf.data (numpy_function over Pillow, the
same `images.letterbox` as training) and go through the model in batches: one forward pass per
batch instead of one per picture. Face detection runs picture by picture (MTCNN has its own
graph), so with --faces the reading is sequential and only the labelling is batched.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from portrait_core.images import IMAGE_SUFFIXES, BadImage, letterbox, open_rgb
from portrait_core.schema import ATTRIBUTES

BATCH = 32  # pictures per forward pass; more brings nothing on 2 cores (bench: "batch")


def list_pictures(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named as they are; folders walked (sorted, hidden folders skipped) for the picture
    suffixes. A name that is neither is kept, so that it gets its own error row."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [
                    Path(folder, f)
                    for f in sorted(files)
                    if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES
                ]
        else:
            found.append(path)
    return found


def columns(attributes: list[str]) -> list[str]:
    cols = ["file", "face", "face_box", "face_confidence", "error"]
    for a in attributes:
        cols += [a, f"{a}_probability", *(f"{a}:{c}" for c in ATTRIBUTES[a].classes)]
        cols.append(f"{a}_overlay")
    return cols


def _result_cells(result: dict) -> dict:
    cells = {}
    for a, r in result.items():
        cells[a] = r["label"]
        cells[f"{a}_probability"] = f"{r['probs'][r['label']]:.4f}"
        cells.update({f"{a}:{c}": f"{p:.4f}" for c, p in r["probs"].items()})
    return cells


def done_files(csv_path: Path, header: list[str]) -> set[str]:
    """Files a previous run finished in this CSV. Its header must be ours (same model heads);
    a last line cut off by an interruption is dropped and the file rewritten without it."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return set()
    if rows[0] != header:
        raise ValueError(
            f"{csv_path} was written for other columns (another model's heads?): "
            "name a new CSV file to start afresh"
        )
    whole = [r for r in rows[1:] if len(r) == len(header)]
    if len(whole) != len(rows) - 1:  # a torn last line: keep the whole rows only
        tmp = csv_path.with_name(csv_path.name + ".partial")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, *whole])
        tmp.replace(csv_path)
    # a file's rows are written together: a file in the CSV is finished
    return {r[0] for r in whole}


def _decode(path: str, size: int) -> tuple[np.ndarray, str]:
    try:
        return letterbox(open_rgb(path), size), ""
    except BadImage as exc:
        return np.zeros((size, size, 3), np.uint8), str(exc)


def _whole_pictures(paths: list[Path], size: int, batch: int) -> Iterator[tuple]:
    """(index, square, error) batches, decoded in parallel by tf.data, in the files' order."""
    import tensorflow as tf

    def load(i):
        square, error = _decode(str(paths[int(i)]), size)
        return square, np.bytes_(error.encode("utf-8"))

    ds = tf.data.Dataset.range(len(paths)).map(
        lambda i: (i, *tf.numpy_function(load, [i], (tf.uint8, tf.string))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    for idx, squares, errors in ds.batch(batch).prefetch(1).as_numpy_iterator():
        yield idx, squares, [e.decode("utf-8") for e in errors]


def predict_pictures(
    inputs: Iterable[str | Path],
    predictor,
    csv_path: str | Path,
    faces: bool = False,
    explain: str | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    batch: int = BATCH,
    progress: bool = True,
) -> dict:
    """Label every picture into csv_path; returns {"pictures", "skipped", "rows", "errors"}.

    An existing CSV is refused unless resume=True (nothing saved is overwritten)."""
    csv_path = Path(csv_path)
    paths = list_pictures(inputs)
    header = columns(predictor.attributes)
    skip: set[str] = set()
    if csv_path.exists():
        if not resume:
            raise ValueError(f"{csv_path} exists: pass --resume to continue it, or name another")
        skip = done_files(csv_path, header)
    todo = [p for p in paths if str(p) not in skip]
    if explain and out is None:
        raise ValueError("--explain needs --out DIR to write the overlays into")
    counts = {"pictures": len(todo), "skipped": len(paths) - len(todo), "rows": 0, "errors": 0}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="pictures", unit="img")
    new_file = not csv_path.exists() or csv_path.stat().st_size == 0
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, restval="")
        if new_file:
            writer.writeheader()

        def write(rows: list[dict]) -> None:
            writer.writerows(rows)
            f.flush()  # a file's rows reach the disk together, before the next file starts
            counts["rows"] += len(rows)
            counts["errors"] += sum(1 for r in rows if r.get("error"))
            if bar is not None:
                bar.update(1)

        if faces:
            from portrait_core.faces import DETECT_BATCH

            for start in range(0, len(todo), DETECT_BATCH):
                for rows in _face_rows(todo[start : start + DETECT_BATCH], predictor, explain, out):
                    write(rows)
        else:
            for idx, squares, errors in _whole_pictures(todo, predictor.image_size, batch):
                good = [k for k, e in enumerate(errors) if not e]
                results = predictor.predict_squares(squares[good]) if good else []
                by_k = dict(zip(good, results))
                for k, i in enumerate(idx):
                    path = todo[int(i)]
                    row = {"file": str(path), "error": errors[k]}
                    if k in by_k:
                        row.update(_result_cells(by_k[k]))
                        if explain:
                            row.update(
                                _overlays(predictor, open_rgb(path), by_k[k], path, explain, out)
                            )
                    write([row])
    if bar is not None:
        bar.close()
    return counts


def _face_rows(paths: list[Path], predictor, explain: str | None, out) -> list[list[dict]]:
    """Each picture's rows, one per face (faces found in one detector batch)."""
    from portrait_core.faces import detect_faces_batch

    photos, errors = [], {}
    for path in paths:
        try:
            photos.append(open_rgb(path))
        except BadImage as exc:
            photos.append(None)
            errors[path] = str(exc)
    readable = [i for i, photo in enumerate(photos) if photo is not None]
    found_in = dict(zip(readable, detect_faces_batch([photos[i] for i in readable])))
    every = []
    for i, path in enumerate(paths):
        if path in errors:
            every.append([{"file": str(path), "error": errors[path]}])
        elif not found_in[i]:
            every.append([{"file": str(path), "face": 0, "error": "no face found"}])
        else:
            every.append(_rows_for_faces(path, photos[i], found_in[i], predictor, explain, out))
    return every


def _rows_for_faces(path: Path, photo, found, predictor, explain: str | None, out) -> list[dict]:
    crops = [predictor.crop(photo, face) for face in found]
    squares = np.stack([predictor.square(c) for c in crops])
    rows = []
    for n, (face, crop, result) in enumerate(
        zip(found, crops, predictor.predict_squares(squares)), start=1
    ):
        row = {
            "file": str(path),
            "face": n,
            "face_box": " ".join(str(v) for v in face.box),
            "face_confidence": f"{face.confidence:.3f}",
            "error": "",
            **_result_cells(result),
        }
        if explain:
            row.update(_overlays(predictor, crop, result, path, explain, out, face=n))
        rows.append(row)
    return rows


def _overlays(predictor, picture, result: dict, path: Path, method: str, out, face=None) -> dict:
    from portrait_core.explain import overlay

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = {a: r["label"] for a, r in result.items()}
    tag = f"_face{face}" if face else ""
    cells = {}
    for attr, heat in predictor.explain(picture, method, classes=labels).items():
        target = out / f"{path.stem}{tag}_{attr}_{method.replace('+', 'p')}.png"
        overlay(picture, heat).save(target)
        cells[f"{attr}_overlay"] = str(target)
    return cells
