"""A CSV manifest: one row per picture, `path` relative to the CSV plus any attribute columns.

Attribute columns (gender, age, face_shape, hairstyle) hold the schema's class names; an age
column may also hold whole years, which are banded like AI Hub's. A column that is absent means
that attribute is not labelled in this source; an empty or unusable cell in a present column
leaves that label blank and is counted. A CSV that cannot be parsed, has no `path` column or no
attribute column at all raises ValueError: that is a problem with the whole source, not with one
record.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from portrait_core.data.table import (
    AGE_OUT_OF_RANGE,
    AGE_YEARS,
    BAD_ROW,
    MISSING_FIELD,
    NO_IMAGE,
    NO_LABEL,
    UNKNOWN_VALUE,
    UNREADABLE_IMAGE,
    Dataset,
    ImportReport,
    make_table,
)
from portrait_core.images import BadImage, check_readable
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES, AgeOutOfRange, UnknownValue, age_band

FORMAT = "csv manifest"
DESCRIPTION = (
    "a .csv file (or a folder holding one) with a 'path' column, relative to the CSV, and any "
    f"of the columns {', '.join(ATTRIBUTE_KEYS)} holding class names"
)
DUPLICATE_PATH = "duplicate path"  # a picture listed twice: the first row counts, later ones don't
PATH_COLUMN = "path"
_DELIMITERS = (",", ";", "\t")


def _header(line: str) -> tuple[list[str], str] | None:
    """Column names (stripped, lower case) and the delimiter that gives a `path` column."""
    for delimiter in _DELIMITERS:
        names = [c.strip().lower() for c in next(csv.reader([line], delimiter=delimiter), [])]
        if PATH_COLUMN in names:
            return names, delimiter
    return None


def _first_line(csv_path: Path) -> str:
    with open(csv_path, encoding="utf-8-sig", newline="") as handle:
        return handle.readline()


def _has_path_column(csv_path: Path) -> bool:
    try:
        return _header(_first_line(csv_path)) is not None
    except (OSError, ValueError):
        return False


def _csv_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv" and p.is_file())


def _find_manifest(folder: Path) -> Path:
    """The one CSV with a `path` column in folder (not searched recursively); ValueError else."""
    candidates = [p for p in _csv_files(folder) if _has_path_column(p)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ValueError(f"{folder} holds no .csv file with a '{PATH_COLUMN}' column")
    names = ", ".join(p.name for p in candidates)
    raise ValueError(f"{folder} holds several manifests ({names}); pass the one to load")


def detect(root: Path) -> bool:
    """True for a .csv file with a `path` column, or a folder holding exactly one such file."""
    root = Path(root)
    try:
        if root.is_file():
            return root.suffix.lower() == ".csv" and _has_path_column(root)
        if root.is_dir():
            return sum(_has_path_column(p) for p in _csv_files(root)) == 1
    except OSError:
        pass
    return False


def _read(csv_path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header names and (line number, cells) per non-blank row; ValueError naming the problem."""
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{csv_path} is not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ValueError(f"{csv_path} cannot be read ({exc.strerror or exc})") from exc
    first = text.splitlines()[0] if text.strip() else ""
    if not first.strip():
        raise ValueError(f"{csv_path} is empty or its first line is blank; it needs a header")
    found = _header(first)
    if found is None:
        columns = ", ".join(c.strip() for c in next(csv.reader([first]), [])) or "none"
        raise ValueError(f"{csv_path} has no '{PATH_COLUMN}' column (columns found: {columns})")
    names, delimiter = found
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        next(reader)  # the header
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((reader.line_num, cells))
    except csv.Error as exc:
        problem = f"{csv_path} is not a readable CSV at line {reader.line_num}: {exc}"
        raise ValueError(problem) from exc
    return names, rows


def _map(key: str, cell: str) -> str:
    """One cell -> class name; raises UnknownValue / AgeOutOfRange."""
    value = cell.strip()
    if value in ATTRIBUTES[key].classes:
        return value
    if key == "age" and value.isascii() and value.isdigit():
        return age_band(float(value))  # not int(): it refuses over 4,300 digits (ValueError)
    raise UnknownValue(f"unknown {key} {value!r}")


def load(path: Path) -> Dataset:
    """Load a manifest given as the .csv file or as the folder holding it."""
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        csv_path = _find_manifest(path)
    elif path.is_file():
        csv_path = path
    else:
        raise ValueError(f"{path} does not exist")
    base = csv_path.parent
    names, raw_rows = _read(csv_path)
    column = {name: i for i, name in reversed(list(enumerate(names)))}  # first of duplicates
    attributes = [k for k in ATTRIBUTE_KEYS if k in column]
    if not attributes:
        raise ValueError(
            f"{csv_path} has no label column; add at least one of {', '.join(ATTRIBUTE_KEYS)}"
        )
    report = ImportReport(format=FORMAT)
    seen: set[str] = set()
    rows: list[dict] = []
    for line, cells in raw_rows:
        where = f"line {line}"
        if len(cells) != len(names) or not cells[column[PATH_COLUMN]].strip():
            report.skip(BAD_ROW, where)
            continue
        relative = cells[column[PATH_COLUMN]].strip()
        if os.sep == "/":
            relative = relative.replace("\\", "/")  # a manifest written on Windows
        where = f"{where}: {relative}"
        image_path = os.path.normpath(base / relative)
        if image_path in seen:
            report.skip(DUPLICATE_PATH, where)
            continue
        seen.add(image_path)
        if not os.path.isfile(image_path):
            report.skip(NO_IMAGE, where)
            continue
        try:
            check_readable(image_path)
        except BadImage:
            report.skip(UNREADABLE_IMAGE, where)
            continue
        labels: dict[str, str | None] = {}
        problems: list[tuple[str, str]] = []
        for key in attributes:
            cell = cells[column[key]]
            labels[key] = None
            if not cell.strip():
                problems.append((key, MISSING_FIELD))
                continue
            try:
                labels[key] = _map(key, cell)
            except AgeOutOfRange:
                problems.append((key, AGE_OUT_OF_RANGE))
            except UnknownValue:
                problems.append((key, UNKNOWN_VALUE))
        if all(v is None for v in labels.values()):
            report.skip(NO_LABEL, where)
            continue
        for key, reason in problems:
            report.blank(key, reason, where)
        row = {"path": image_path, **labels}
        if labels.get("age") is not None and cells[column["age"]].strip().isdigit():
            row[AGE_YEARS] = float(cells[column["age"]].strip())  # years, not a band's name
        rows.append(row)
    report.n_loaded = len(rows)
    return Dataset(root=base, table=make_table(rows), report=report)
