"""Class counts of a data set, overall and per split: what `stats` prints and the Dataset page draws."""

from __future__ import annotations

import pandas as pd

from portrait_core.data.split import DEFAULT_FRACTIONS, SPLITS, load_or_make_split
from portrait_core.data.table import Dataset, describe_blank, describe_skipped
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES


def class_counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{attribute: {class: count}} with every class of the schema present (0 where absent)."""
    counts = {}
    for a in ATTRIBUTE_KEYS:
        per_class = table[a].value_counts(sort=False).reindex(ATTRIBUTES[a].classes, fill_value=0)
        counts[a] = {c: int(n) for c, n in per_class.items()}
    return counts


def dataset_stats(
    dataset: Dataset, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> dict:
    """The stats object: format, n_images, skipped, blank_labels, counts, missing, splits.

    `skipped` counts pictures left out, by reason; `blank_labels` counts labels left blank on
    pictures that were kept, {attribute: {reason: count}}.
    """
    table = dataset.table
    splits, _ = load_or_make_split(dataset, seed, fractions)
    return {
        "format": dataset.format,
        "n_images": len(table),
        "skipped": dataset.report.skipped_counts(),
        "blank_labels": dataset.report.blank_counts(),
        "counts": class_counts(table),
        "missing": {a: int(table[a].isna().sum()) for a in ATTRIBUTE_KEYS},
        "splits": {s: class_counts(table[splits == s]) for s in SPLITS},
    }


def format_stats(stats: dict) -> str:
    """The stats object as readable plain-text tables, one per attribute."""
    lines = [f"format: {stats['format']}    images: {stats['n_images']:,}"]
    if stats["skipped"]:
        lines.append(f"pictures left out: {describe_skipped(stats['skipped'])}")
    if stats["blank_labels"]:
        lines.append(f"labels left blank: {describe_blank(stats['blank_labels'])}")
    for attr in ATTRIBUTE_KEYS:
        header = f"{'class':<18}{'all':>8}" + "".join(f"{s:>8}" for s in SPLITS) + f"{'share':>8}"
        lines += [
            "",
            f"{ATTRIBUTES[attr].title} ({attr}), missing {stats['missing'][attr]:,}",
            header,
        ]
        total = sum(stats["counts"][attr].values()) or 1
        for cls, n in stats["counts"][attr].items():
            per_split = "".join(f"{stats['splits'][s][attr][cls]:>8,}" for s in SPLITS)
            lines.append(f"{cls:<18}{n:>8,}{per_split}{n / total:>8.1%}")
    return "\n".join(lines)
