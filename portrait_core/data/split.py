"""A seeded train/val/test split, stratified on the labels present, saved beside the data.

Never Keras' `validation_split`: the study's data was sorted by gender and age, so the last 20 %
it took for validation was a biased slice. Here each record's split is fixed once and written to
a CSV, so a run can be reproduced and a picture never moves from test into train when the data
set grows (new pictures are assigned among themselves; old ones keep their split).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from portrait_core.data.table import Dataset, label_codes
from portrait_core.paths import CACHE
from portrait_core.schema import ATTRIBUTE_KEYS

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
GOLDEN = (5**0.5 - 1) / 2  # its multiples mod 1 spread evenly over any run of positions
SPLIT_FOLDER = ".portrait_lab"  # beside the data; falls back to CACHE_ROOT when not writable
CACHE_ROOT = CACHE


def check_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"split fractions must be three positive numbers summing to 1, got {fractions}"
        )
    return tuple(float(f) for f in fractions)


def assign_splits(
    table: pd.DataFrame, seed: int, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> np.ndarray:
    """Return 'train'/'val'/'test' per row, stratified on every attribute's label (missing too).

    Rows are sorted by their label combination (random order inside one), then walked with a
    golden-ratio sequence: any contiguous run of rows, and so every label combination and every
    single attribute's class, receives the fractions as closely as its size allows.
    """
    fractions = check_fractions(fractions)
    n = len(table)
    if n == 0:
        return np.array([], dtype=object)
    rng = np.random.default_rng(seed)
    keys = [label_codes(table, a) for a in reversed(ATTRIBUTE_KEYS)]
    order = np.lexsort([rng.random(n), *keys])  # last key is the primary sort key
    phase = rng.random()
    position_value = (phase + GOLDEN * np.arange(n)) % 1.0
    cut_train, cut_val = fractions[0], fractions[0] + fractions[1]
    names = np.where(
        position_value < cut_train, "train", np.where(position_value < cut_val, "val", "test")
    )
    result = np.empty(n, dtype=object)
    result[order] = names
    return result


def split_file(root: Path, seed: int, fractions: tuple[float, float, float]) -> Path:
    tag = "-".join(str(round(f * 100)) for f in fractions)
    name = f"split-seed{seed}-{tag}.csv"
    preferred = root / SPLIT_FOLDER
    if _writable(preferred if preferred.exists() else root):
        return preferred / name
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return CACHE_ROOT / "splits" / digest / name


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def load_or_make_split(
    dataset: Dataset, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> tuple[pd.Series, Path]:
    """The split of every row of `dataset.table` (a Series aligned with it) and its CSV file.

    Existing assignments in the file are kept; rows not in it are assigned among themselves
    and appended. The file is rewritten atomically, so a crash never leaves half a split.
    """
    fractions = check_fractions(fractions)
    table = dataset.table
    path = split_file(dataset.root, seed, fractions)
    root = os.path.abspath(dataset.root)
    relative = [Path(os.path.relpath(p, root)).as_posix() for p in table["path"]]
    known: dict[str, str] = {}
    if path.exists():
        saved = pd.read_csv(path, dtype=str, keep_default_na=False)
        if list(saved.columns) == ["path", "split"] and saved["split"].isin(SPLITS).all():
            known = dict(zip(saved["path"], saved["split"]))
    splits = np.array([known.get(r, "") for r in relative], dtype=object)
    new = splits == ""
    if new.any():
        splits[new] = assign_splits(table[new].reset_index(drop=True), seed, fractions)
        merged = {**known, **dict(zip(np.asarray(relative)[new], splits[new]))}
        _write_atomic(path, pd.DataFrame({"path": list(merged), "split": list(merged.values())}))
    return pd.Series(splits, index=table.index, name="split"), path


def _write_atomic(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    frame.sort_values("path").to_csv(tmp, index=False)
    os.replace(tmp, path)
