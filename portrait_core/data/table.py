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

# Why a picture is left out of the table (ImportReport.skipped) ...
NO_IMAGE = "no image"
UNREADABLE_IMAGE = "unreadable image"
MALFORMED_JSON = "malformed JSON"
NO_LABEL = "no usable label"
BAD_ROW = "malformed row"
# ... and why one label of a kept picture is left blank (ImportReport.blank_labels): the picture
# still trains the other heads, so it is not "left out".
MISSING_FIELD = "missing field"
UNKNOWN_VALUE = "unknown value"
AGE_OUT_OF_RANGE = "age out of range"

AGE_YEARS = "age_years"  # the table's column of exact ages (NaN: unknown), beside the age band

EXAMPLES_PER_REASON = 5  # enough to find the bad files, short enough to show in the app


def _printable(where: str | Path) -> str:
    # A name the file system gave as undecodable bytes (surrogates) would break a UTF-8
    # terminal, JSON file or web page: show those bytes as escapes (b'\xff' as '\xff') instead.
    text = str(where)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def _keep_example(shown: list[str], where: str | Path) -> None:
    if len(shown) < EXAMPLES_PER_REASON:
        shown.append(_printable(where))


@dataclass
class ImportReport:
    """What an import did: pictures loaded, pictures left out by reason, and labels left blank
    (their pictures kept) by attribute and reason; a few example files for each."""

    format: str
    n_loaded: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> pictures left out
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few file names
    # attribute -> reason -> labels left blank, and a few file names for each
    blank_labels: dict[str, Counter] = field(default_factory=dict)
    blank_examples: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # pictures kept with a remark (e.g. several faces, the largest kept), and a few names each
    noted: Counter = field(default_factory=Counter)
    noted_examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, remark: str, where: str | Path) -> None:
        """One picture kept, with a remark worth counting."""
        self.noted[remark] += 1
        _keep_example(self.noted_examples.setdefault(remark, []), where)

    def skip(self, reason: str, where: str | Path) -> None:
        """One picture left out of the table."""
        self.skipped[reason] += 1
        _keep_example(self.examples.setdefault(reason, []), where)

    def blank(self, attribute: str, reason: str, where: str | Path) -> None:
        """One label of a kept picture left blank (missing)."""
        if attribute not in ATTRIBUTES:
            raise ValueError(f"unknown attribute {attribute!r}; choose from {ATTRIBUTE_KEYS}")
        self.blank_labels.setdefault(attribute, Counter())[reason] += 1
        _keep_example(self.blank_examples.setdefault(attribute, {}).setdefault(reason, []), where)

    @property
    def n_skipped(self) -> int:
        """Pictures left out; blank labels are not counted, their pictures were loaded."""
        return sum(self.skipped.values())

    @property
    def n_blank(self) -> int:
        """Labels left blank, over all attributes."""
        return sum(sum(reasons.values()) for reasons in self.blank_labels.values())

    def skipped_counts(self) -> dict[str, int]:
        """{reason: pictures left out}, reasons sorted: `skipped` in `stats --json`."""
        return dict(sorted(self.skipped.items()))

    def blank_counts(self) -> dict[str, dict[str, int]]:
        """{attribute: {reason: labels left blank}}, in schema order: `blank_labels` in JSON."""
        return {
            a: dict(sorted(self.blank_labels[a].items()))
            for a in ATTRIBUTE_KEYS
            if self.blank_labels.get(a)
        }

    def summary(self) -> str:
        """One line: '3,000 loaded from aihub; left out: 2 no image; labels left blank: age …'."""
        text = f"{self.n_loaded:,} loaded from {self.format}"
        if self.skipped:
            text += f"; left out: {describe_skipped(self.skipped_counts())}"
        if self.n_blank:
            text += f"; labels left blank: {describe_blank(self.blank_counts())}"
        return text


def describe_skipped(skipped: dict[str, int]) -> str:
    """'1 malformed JSON, 2 no image': pictures left out, for a terminal or a page."""
    return ", ".join(f"{n:,} {reason}" for reason, n in skipped.items())


def describe_blank(blank: dict[str, dict[str, int]]) -> str:
    """'age 1 age out of range, face_shape 1 unknown value': labels left blank, per attribute."""
    return ", ".join(
        f"{attr} {n:,} {reason}" for attr, reasons in blank.items() for reason, n in reasons.items()
    )


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
    """Rows of {'path': str, attr: class name or None, optionally 'age_years': the exact age
    behind the age band, where the source gives one} -> the canonical typed table. `age_years`
    is NaN where unknown; soft age targets read it (`train --age-spread`).

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
            AGE_YEARS: pd.Series([r.get(AGE_YEARS) for r in rows], dtype="float64"),
        }
    )
    return frame.sort_values("path", kind="stable").reset_index(drop=True)


def label_codes(table: pd.DataFrame, attribute: str):
    """Class indices of one attribute as int64 numpy, -1 where the label is missing."""
    return table[attribute].cat.codes.to_numpy().astype("int64")
