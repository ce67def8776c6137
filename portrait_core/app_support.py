"""What the app's pages compute about a data set: shares, warnings, cross-tabs, balancing, samples.

Pure functions over the canonical table (`portrait_core.data.table`) and class-count dicts
(`portrait_core.data.stats.class_counts`), so the pages stay layout and widgets and every number
they show can be tested without Streamlit. Never imports Streamlit or TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from portrait_core.data.split import SPLITS, load_or_make_split
from portrait_core.data.table import Dataset, ImportReport, label_codes
from portrait_core.images import BadImage, open_rgb
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES

MINORITY_SHARE = 0.05  # a class under 5 % of the labelled pictures gets a warning on the page
THUMBNAIL_PX = 160  # the sample grid shows pictures this big; real AI Hub pictures are far larger
MISSING_LABEL = "?"  # how a missing label reads in a thumbnail caption


def data_version(path: str | Path) -> float:
    """The modification time of a data folder (or manifest), 0.0 if it is absent.

    Used as part of a cache key: adding or removing files in the folder changes it, so a cached
    table is not served after the data set changed on disk.
    """
    try:
        return Path(path).expanduser().stat().st_mtime
    except OSError:
        return 0.0


def majority_share(counts: dict[str, int]) -> tuple[str | None, float]:
    """(largest class, its share of the labelled pictures); (None, 0.0) when nothing is labelled.

    The share is the accuracy of always answering that class: the baseline a model must beat.
    """
    total = sum(counts.values())
    if total == 0:
        return None, 0.0
    top = max(counts, key=lambda c: counts[c])  # first of equals, i.e. schema order
    return top, counts[top] / total


def minority_warnings(
    counts: dict[str, int], threshold: float = MINORITY_SHARE, attribute: str | None = None
) -> list[str]:
    """One sentence per class under `threshold` of the labelled pictures (an absent class too)."""
    total = sum(counts.values())
    if total == 0:
        return []
    prefix = f"{ATTRIBUTES[attribute].title}: " if attribute else ""
    messages = []
    for cls, n in counts.items():
        share = n / total
        if n == 0:
            messages.append(f"{prefix}no picture of class '{cls}'; a model cannot learn it.")
        elif share < threshold:
            messages.append(
                f"{prefix}class '{cls}' is only {share:.1%} of the labelled pictures "
                f"({n:,} of {total:,}); consider balancing it."
            )
    return messages


def missing_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Per attribute: labelled and missing counts and the missing share, in schema order."""
    n = len(table)
    rows = []
    for attr in ATTRIBUTE_KEYS:
        missing = int(table[attr].isna().sum())
        rows.append(
            {
                "attribute": ATTRIBUTES[attr].title,
                "labelled": n - missing,
                "missing": missing,
                "missing share": missing / n if n else 0.0,
            }
        )
    return pd.DataFrame(rows)


def split_sizes(dataset: Dataset, seed: int = 0) -> dict[str, int]:
    """Pictures per split, in SPLITS order (the split the training pipeline uses, same seed)."""
    splits, _ = load_or_make_split(dataset, seed)
    return {s: int((splits == s).sum()) for s in SPLITS}


def split_counts(stats: dict, attribute: str) -> pd.DataFrame:
    """Long table (class, split, count) of one attribute from a `dataset_stats` object.

    Classes in schema order and splits in SPLITS order, every pair present (0 where absent), so a
    grouped bar chart keeps the same order for every data set.
    """
    rows = [
        {"class": cls, "split": split, "count": int(stats["splits"][split][attribute][cls])}
        for cls in ATTRIBUTES[attribute].classes
        for split in SPLITS
    ]
    return pd.DataFrame(rows)


def crosstab(table: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Counts of pictures labelled with both a and b: classes of a as rows, of b as columns.

    Every class of the schema is present (0 where none); pictures missing either label are left
    out. a == b gives the diagonal of that attribute's counts.
    """
    ka, kb = ATTRIBUTES[a].n_classes, ATTRIBUTES[b].n_classes
    codes_a, codes_b = label_codes(table, a), label_codes(table, b)
    both = (codes_a >= 0) & (codes_b >= 0)
    grid = np.zeros((ka, kb), dtype=np.int64)
    np.add.at(grid, (codes_a[both], codes_b[both]), 1)
    return pd.DataFrame(
        grid,
        index=pd.Index(ATTRIBUTES[a].classes, name=a),
        columns=pd.Index(ATTRIBUTES[b].classes, name=b),
    )


def balanced_counts(counts: dict[str, int], target: int | None) -> dict[str, int]:
    """Class counts after oversampling to `target` per class, as the training pipeline does.

    A present class with fewer than target pictures is repeated up to target; a larger one keeps
    its size (oversampling never drops pictures); an absent class stays 0 (nothing to repeat).
    target None means no balancing.
    """
    if target is None:
        return dict(counts)
    if target < 1:
        raise ValueError(f"the balancing target must be at least 1 picture per class, got {target}")
    return {cls: max(n, target) if n > 0 else 0 for cls, n in counts.items()}


@dataclass(frozen=True)
class BalanceSummary:
    before: int  # labelled pictures per epoch without balancing
    after: int  # labelled pictures per epoch with it
    most_repeated: str | None  # the class oversampled the most
    repeat: float  # how many times over that class is shown per epoch


def balance_summary(counts: dict[str, int], target: int) -> BalanceSummary:
    """Totals before and after oversampling to target, and the class repeated the most."""
    after = balanced_counts(counts, target)
    factors = {c: after[c] / n for c, n in counts.items() if n > 0}
    top = max(factors, key=lambda c: factors[c]) if factors else None
    return BalanceSummary(
        before=sum(counts.values()),
        after=sum(after.values()),
        most_repeated=top,
        repeat=factors[top] if top else 1.0,
    )


def balance_frame(counts: dict[str, int], target: int) -> pd.DataFrame:
    """Long table (class, when, count) with when in ('before', 'after') for one bar chart."""
    after = balanced_counts(counts, target)
    rows = [{"class": c, "when": "before", "count": n} for c, n in counts.items()]
    rows += [{"class": c, "when": "after", "count": n} for c, n in after.items()]
    return pd.DataFrame(rows)


def sample_rows(
    table: pd.DataFrame, filters: dict[str, str | None], n: int, seed: int = 0
) -> pd.DataFrame:
    """Up to n random rows whose labels match every filter (attribute -> class; None = any).

    The same seed gives the same rows, so the sample grid does not change on every rerun.
    """
    unknown = [a for a in filters if a not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attribute {', '.join(unknown)}; choose from {ATTRIBUTE_KEYS}")
    mask = pd.Series(True, index=table.index)
    for attr, cls in filters.items():
        if cls is None:
            continue
        if cls not in ATTRIBUTES[attr].classes:
            raise ValueError(f"{attr} has no class {cls!r}; choose from {ATTRIBUTES[attr].classes}")
        mask &= table[attr] == cls
    matching = table[mask.to_numpy()]
    if len(matching) <= n:
        return matching
    return matching.sample(n=n, random_state=seed)


def label_line(row: pd.Series | dict) -> str:
    """The four labels in schema order, e.g. 'female · 30s · oval · wavy' ('?' = missing)."""
    parts = []
    for attr in ATTRIBUTE_KEYS:
        value = row.get(attr)
        parts.append(MISSING_LABEL if value is None or pd.isna(value) else str(value))
    return " · ".join(parts)


def thumbnail(path: str | Path, size: int = THUMBNAIL_PX) -> np.ndarray | None:
    """The picture shrunk to fit size x size (aspect kept) as uint8 RGB; None if unreadable."""
    try:
        img = open_rgb(path)
    except BadImage:
        return None
    img.thumbnail((size, size))
    return np.asarray(img)


def skipped_rows(report: ImportReport) -> pd.DataFrame:
    """Pictures the import left out: one row per reason, most frequent first, a few examples."""
    rows = [
        {
            "reason": reason,
            "count": n,
            "examples": ", ".join(report.examples.get(reason, [])),
        }
        for reason, n in sorted(report.skipped.items(), key=lambda item: -item[1])
    ]
    return pd.DataFrame(rows, columns=["reason", "count", "examples"])


def blank_label_rows(report: ImportReport) -> pd.DataFrame:
    """Labels the import left blank (their pictures kept): one row per attribute and reason.

    Attributes in schema order, the most frequent reason first within each; `attribute` is the
    attribute's title, as the page shows it.
    """
    rows = [
        {
            "attribute": ATTRIBUTES[attr].title,
            "reason": reason,
            "count": n,
            "examples": ", ".join(report.blank_examples.get(attr, {}).get(reason, [])),
        }
        for attr in ATTRIBUTE_KEYS
        for reason, n in sorted(
            report.blank_labels.get(attr, {}).items(), key=lambda item: -item[1]
        )
    ]
    return pd.DataFrame(rows, columns=["attribute", "reason", "count", "examples"])
