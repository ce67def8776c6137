"""The one table every data source loads into: image path plus the four labels, with an import report.

Labels are pandas Categoricals whose categories are the schema's classes in index order, so
`table[attr].cat.codes` is the class index and -1 marks a missing label (missing is never a class).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES

# Reasons a record (or one of its labels) is left out. Record-level reasons drop the row;
# label-level reasons keep the row and leave that one label missing.
NO_IMAGE = "no image"
UNREADABLE_IMAGE = "unreadable image"
MALFORMED_JSON = "malformed JSON"
MISSING_FIELD = "missing field"
UNKNOWN_VALUE = "unknown value"
AGE_OUT_OF_RANGE = "age out of range"
NO_LABEL = "no usable label"
BAD_ROW = "malformed row"

EXAMPLES_PER_REASON = 5  # enough to find the bad files, short enough to show in the app


@dataclass
class ImportReport:
    """What an import did: records loaded, and what was left out, counted by reason."""

    format: str
    n_loaded: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count of records or labels
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few file names

    def skip(self, reason: str, where: str | Path) -> None:
        self.skipped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(str(where))

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line for a terminal or a page: '3,000 loaded; left out: 2 no image, 1 ...'."""
        text = f"{self.n_loaded:,} loaded from {self.format}"
        if self.skipped:
            parts = ", ".join(f"{n:,} {reason}" for reason, n in sorted(self.skipped.items()))
            text += f"; left out: {parts}"
        return text


@dataclass
class Dataset:
    """A loaded data set: its root folder, the table (path + labels) and the import report."""

    root: Path
    table: pd.DataFrame
    report: ImportReport

    @property
    def format(self) -> str:
        return self.report.format

    def __len__(self) -> int:
        return len(self.table)


def make_table(rows: list[dict]) -> pd.DataFrame:
    """Rows of {'path': str, attr: class name or None} -> the canonical typed table.

    Rows are sorted by path so that the table (and so the split) does not depend on the order
    the file system listed them in.
    """
    frame = pd.DataFrame(
        {
            "path": pd.Series([str(r["path"]) for r in rows], dtype=object),
            **{
                key: pd.Categorical(
                    [r.get(key) for r in rows], categories=list(ATTRIBUTES[key].classes)
                )
                for key in ATTRIBUTE_KEYS
            },
        }
    )
    return frame.sort_values("path", kind="stable").reset_index(drop=True)


def label_codes(table: pd.DataFrame, attribute: str):
    """Class indices of one attribute as int64 numpy, -1 where the label is missing."""
    return table[attribute].cat.codes.to_numpy().astype("int64")
