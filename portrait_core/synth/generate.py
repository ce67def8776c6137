"""The synthetic montage set: sample labels, draw portraits, write the AI Hub layout.

`generate(out, n, seed)` writes pairs `N.png` + `N.json` exactly as the AI Hub
"persona-based virtual person montage" set lays them out (NOTES.md §1): N sequential from 1 with
occasional gaps, JSON with the set's own misspelled `descripton` key and the raw Korean values.

Everything about picture N depends only on (seed, N) -- labels and drawing come from
`np.random.default_rng([seed, N])` -- so the output is the same byte for byte however many
processes draw it. Which indices are left out as gaps comes from a separate stream of the seed.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from portrait_core.schema import ATTRIBUTES, RAW_FACE_SHAPE, RAW_GENDER, RAW_HAIRSTYLE
from portrait_core.synth.draw import draw_portrait

# Default class frequencies, in schema class order. Hairstyle follows the study's train part
# (4,467 straight / 2,392 curly / 976 wavy / 199 sports / 37 balding of 8,071, rounded), except
# balding: 2 % here, not the study's 0.5 %. At 0.5 % the 6,000-picture default set held 21
# balding training pictures and 2 test ones: too few to learn the class (recall 0.68 on fresh
# balding pictures) or to measure it (one picture moved the balanced accuracy by 0.1). The
# extra 1.5 % comes out of straight, the majority class.
DEFAULT_P: dict[str, tuple[float, ...]] = {
    "gender": (0.5, 0.5),
    "age": (0.2, 0.2, 0.2, 0.2, 0.2),
    "face_shape": (1 / 6,) * 6,
    # straight, sports, curly, wavy, balding
    "hairstyle": (0.535, 0.025, 0.30, 0.12, 0.02),
}
GAP_RATE = 0.03  # share of indices left out, like the real set's missing numbers
PARALLEL_FROM = 200  # below this many pictures a process pool costs more than it saves
SYNTHETIC_MARKER = "synthetic.json"  # written beside the pictures: this folder was drawn
_GAP_STREAM = 0x6A9  # separates the gap stream from the per-picture streams [seed, N]


def class_probabilities(attr: str, balanced: bool = False) -> np.ndarray:
    """Sampling probabilities for one attribute's classes, in schema order."""
    k = ATTRIBUTES[attr].n_classes
    if balanced:
        return np.full(k, 1.0 / k)
    p = np.asarray(DEFAULT_P[attr], dtype=np.float64)
    return p / p.sum()


def sample_attributes(rng: np.random.Generator, balanced: bool = False) -> dict:
    """One picture's labels: class names for gender, face_shape, hairstyle and an integer age.

    Attributes are sampled independently; the age is uniform within a band chosen first, so
    every band from 20s to 60+ (here 60..69) is covered.
    """
    attrs: dict = {}
    for key in ("gender", "age", "face_shape", "hairstyle"):
        classes = ATTRIBUTES[key].classes
        idx = int(rng.choice(len(classes), p=class_probabilities(key, balanced)))
        if key == "age":
            attrs["age"] = 20 + 10 * idx + int(rng.integers(0, 10))
        else:
            attrs[key] = classes[idx]
    return attrs


def picture_ids(n: int, seed: int, gap_rate: float = GAP_RATE) -> list[int]:
    """n file ids counting up from 1, with about gap_rate of the numbers skipped."""
    rng = np.random.default_rng([seed, _GAP_STREAM])
    ids: list[int] = []
    i = 0
    while len(ids) < n:
        i += 1
        if rng.random() >= gap_rate:
            ids.append(i)
    return ids


def sample_labels(n: int, seed: int, balanced: bool = False) -> list[dict]:
    """The labels generate() would write for n pictures (no drawing), each with its 'id'."""
    return [
        {"id": i, **sample_attributes(np.random.default_rng([seed, i]), balanced)}
        for i in picture_ids(n, seed)
    ]


def record_json(file_id: int, attrs: dict) -> dict:
    """The AI Hub record for one picture (note the set's own spelling `descripton`)."""
    return {
        "info": [
            {
                "org_img_name": str(file_id),
                "gender": RAW_GENDER[attrs["gender"]],
                "age": int(attrs["age"]),
            }
        ],
        "descripton": [
            {
                "face": {"type": RAW_FACE_SHAPE[attrs["face_shape"]]},
                "hairstyle": {"type": RAW_HAIRSTYLE[attrs["hairstyle"]]},
            }
        ],
    }


def make_picture(file_id: int, seed: int, size: int = 128, balanced: bool = False):
    """(attrs, PIL image) for picture file_id of the set with this seed."""
    rng = np.random.default_rng([seed, file_id])
    attrs = sample_attributes(rng, balanced)
    return attrs, draw_portrait(attrs, size, rng)


def _write_one(job: tuple[Path, int, int, int, bool]) -> int:
    out, file_id, seed, size, balanced = job
    attrs, img = make_picture(file_id, seed, size, balanced)
    img.save(out / f"{file_id}.png", format="PNG")
    text = json.dumps(record_json(file_id, attrs), ensure_ascii=False, indent=2)
    (out / f"{file_id}.json").write_text(text + "\n", encoding="utf-8")
    return file_id


def generate(
    out: Path,
    n: int,
    seed: int,
    size: int = 128,
    balanced: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> int:
    """Write n synthetic pairs N.png + N.json into out (created if needed); return how many.

    workers: processes to draw with (default: all CPUs, capped at 8; 1 = in this process).
    A pool is only used from PARALLEL_FROM pictures on; the output does not depend on it.
    The pool starts its processes with "spawn", so a script that calls this at top level
    needs the usual `if __name__ == "__main__":` guard (as on macOS and Windows anyway).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Says what the folder is: a model trained on it is marked as trained on drawn montages
    # (Predict warns that its labels for real photos mean little). The AI Hub loader reads
    # numbered files only, so the marker is never taken for a picture's labels.
    marker = {"generator": "portrait_core.synth", "n": n, "seed": seed, "size": size}
    (out / SYNTHETIC_MARKER).write_text(json.dumps({**marker, "balanced": balanced}) + "\n")
    jobs = [(out, i, seed, size, balanced) for i in picture_ids(n, seed)]
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="synthetic portraits", unit="img", file=sys.stderr)
    written = 0
    try:
        if workers > 1 and len(jobs) >= PARALLEL_FROM:
            # spawn, not fork: the caller may be a threaded app (Streamlit, TensorFlow), and
            # forking a threaded process can deadlock. A process pool executor, not
            # multiprocessing.Pool: a worker that dies raises BrokenProcessPool instead of
            # leaving the caller waiting forever.
            chunk = max(1, min(32, len(jobs) // (workers * 8)))
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                for _ in pool.map(_write_one, jobs, chunksize=chunk):
                    written += 1
                    if bar is not None:
                        bar.update(1)
        else:
            for job in jobs:
                _write_one(job)
                written += 1
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return written
