"""Class counts of a data set, overall and per split: what `stats` prints and the Dataset page draws."""

from __future__ import annotations

import pandas as pd

from portrait_core.data.split import DEFAULT_FRACTIONS, SPLITS, load_or_make_split
from portrait_core.data.table import Dataset
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES


def class_counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{attribute: {class: count}} with every class of the schema present (0 where absent)."""
    return {
        a: {c: int(n) for c, n in table[a].value_counts(sort=False).reindex(ATTRIBUTES[a].classes, fill_value=0).items()}
        for a in ATTRIBUTE_KEYS
    }


def dataset_stats(
    dataset: Dataset, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> dict:
    """The stats object: format, n_images, skipped, counts, missing, splits (see README)."""
    table = dataset.table
    splits, _ = load_or_make_split(dataset, seed, fractions)
    return {
        "format": dataset.format,
        "n_images": len(table),
        "skipped": dict(sorted(dataset.report.skipped.items())),
        "counts": class_counts(table),
        "missing": {a: int(table[a].isna().sum()) for a in ATTRIBUTE_KEYS},
        "splits": {s: class_counts(table[splits == s]) for s in SPLITS},
    }


def format_stats(stats: dict) -> str:
    """The stats object as readable plain-text tables, one per attribute."""
    lines = [f"format: {stats['format']}    images: {stats['n_images']:,}"]
    if stats["skipped"]:
        lines.append("left out: " + ", ".join(f"{n:,} {r}" for r, n in stats["skipped"].items()))
    for attr in ATTRIBUTE_KEYS:
        header = f"{'class':<18}{'all':>8}" + "".join(f"{s:>8}" for s in SPLITS) + f"{'share':>8}"
        lines += ["", f"{ATTRIBUTES[attr].title} ({attr}), missing {stats['missing'][attr]:,}", header]
        total = sum(stats["counts"][attr].values()) or 1
        for cls, n in stats["counts"][attr].items():
            per_split = "".join(f"{stats['splits'][s][attr][cls]:>8,}" for s in SPLITS)
            lines.append(f"{cls:<18}{n:>8,}{per_split}{n / total:>8.1%}")
    return "\n".join(lines)
