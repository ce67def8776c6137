"""UTKFace: labels in the file name, `{age}_{gender}_{race}_{datetime}.jpg` (or `.jpg.chip.jpg`).

Gender 0 is male and 1 female; only the age band and gender are labelled (race is not used).
Subfolders (part1/, part2/, crop_part1/ ...) are searched too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from portrait_core.data.table import (
    AGE_OUT_OF_RANGE,
    AGE_YEARS,
    NO_LABEL,
    UNKNOWN_VALUE,
    UNREADABLE_IMAGE,
    Dataset,
    ImportReport,
    make_table,
)
from portrait_core.images import IMAGE_SUFFIXES, BadImage, check_readable
from portrait_core.schema import AgeOutOfRange, age_band

FORMAT = "utkface"
DESCRIPTION = (
    "a folder of pictures named {age}_{gender}_{race}_{datetime}.jpg (or .jpg.chip.jpg), "
    "gender 0 male / 1 female, as in UTKFace"
)
UNPARSEABLE_NAME = "unparseable file name"  # a picture whose name does not carry the labels

NAME_PATTERN = re.compile(r"(\d+)_(\d+)_(\d+)_(\d+)(?:\.jpg\.chip)?\.jpe?g", re.IGNORECASE)
GENDER_CODES = {"0": "male", "1": "female"}
_DETECT_SAMPLE = 500  # pictures looked at while detecting


def _images(root: Path):
    """(folder, name) of every picture under root, hidden folders skipped, in a stable order."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                yield folder, name


def parse_name(name: str) -> tuple[int, str] | None:
    """'25_1_3_20170104.jpg.chip.jpg' -> (25, '1'); None when the name does not match."""
    match = NAME_PATTERN.fullmatch(name)
    return None if match is None else (int(match.group(1)), match.group(2))


def detect(root: Path) -> bool:
    """True when most pictures under root (up to a sample) carry UTKFace-style names."""
    root = Path(root)
    if not root.is_dir():
        return False
    seen = matched = 0
    for _, name in _images(root):
        seen += 1
        matched += parse_name(name) is not None
        if seen >= _DETECT_SAMPLE:
            break
    return seen > 0 and matched * 2 > seen


def load(root: Path) -> Dataset:
    """Load every picture under root; a name without labels is counted, not raised."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    report = ImportReport(format=FORMAT)
    rows: list[dict] = []
    for folder, name in _images(root):
        image_path = os.path.join(folder, name)
        where = Path(image_path).relative_to(root).as_posix()
        parsed = parse_name(name)
        if parsed is None:
            report.skip(UNPARSEABLE_NAME, where)
            continue
        try:
            check_readable(image_path)
        except BadImage:
            report.skip(UNREADABLE_IMAGE, where)
            continue
        years, gender_code = parsed
        problems: list[tuple[str, str]] = []
        gender = GENDER_CODES.get(gender_code)
        if gender is None:
            problems.append(("gender", UNKNOWN_VALUE))
        try:
            age = age_band(years)
        except AgeOutOfRange:
            age = None
            problems.append(("age", AGE_OUT_OF_RANGE))
        if gender is None and age is None:
            report.skip(NO_LABEL, where)
            continue
        for key, reason in problems:
            report.blank(key, reason, where)
        rows.append(
            {
                "path": image_path,
                "gender": gender,
                "age": age,
                AGE_YEARS: float(years) if age else None,
            }
        )
    report.n_loaded = len(rows)
    return Dataset(root=root, table=make_table(rows), report=report)
