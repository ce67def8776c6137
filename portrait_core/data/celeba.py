"""CelebA: a picture folder with `list_attr_celeba.txt` (40 binary attributes per picture).

The attribute file: the picture count on line 1, the 40 attribute names on line 2, then one row
per picture: its file name and 40 values of 1 / -1. Pictures may lie beside the file or in a
subfolder such as img_align_celeba/.

What CelebA can say in our schema: gender from `Male`; hairstyle from Straight_Hair / Wavy_Hair /
Bald where exactly one of them is set; face shape "oval" where Oval_Face is set. Everything else
(age always, face shape when not oval, hairstyle when none of the three is set) is simply not
labelled by this source and is not counted; a hairstyle with two or more of the three set is
contradictory: left blank and counted as an unknown value.
"""

from __future__ import annotations

import os
from pathlib import Path

from portrait_core.data.table import (
    BAD_ROW,
    NO_IMAGE,
    UNKNOWN_VALUE,
    UNREADABLE_IMAGE,
    Dataset,
    ImportReport,
    make_table,
)
from portrait_core.images import BadImage, check_readable, is_image_file

FORMAT = "celeba"
DESCRIPTION = (
    "a folder with list_attr_celeba.txt and its pictures (beside it or in a subfolder such as "
    "img_align_celeba/), as in CelebA"
)
ATTR_FILE = "list_attr_celeba.txt"
PREFERRED_FOLDER = "img_align_celeba"  # where a name is found twice, the aligned crop wins
HAIR_COLUMNS = {"Straight_Hair": "straight", "Wavy_Hair": "wavy", "Bald": "balding"}
USED_COLUMNS = ("Male", "Oval_Face", *HAIR_COLUMNS)
_VALUES = frozenset({"1", "-1"})


def detect(root: Path) -> bool:
    """True when root is a folder holding list_attr_celeba.txt."""
    root = Path(root)
    return root.is_dir() and (root / ATTR_FILE).is_file()


def _index_images(root: Path) -> dict[str, str]:
    """File name -> path of every picture under root: root itself first, then img_align_celeba,
    then other folders in sorted order."""
    found: dict[str, tuple[tuple[int, str], str]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(root)
        rank = (0 if rel == Path(".") else 1 if rel.name == PREFERRED_FOLDER else 2, str(rel))
        for name in files:
            if not is_image_file(Path(name)):
                continue
            held = found.get(name)
            if held is None or rank < held[0]:
                found[name] = (rank, os.path.join(folder, name))
    return {name: path for name, (_, path) in found.items()}


def _read_header(lines: list[str], attr_path: Path) -> list[str]:
    """The attribute names from line 2; ValueError when the file is not a CelebA attribute list."""
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise ValueError(
            f"{attr_path} does not start with a picture count and a line of attribute names"
        )
    names = lines[1].split()
    missing = [c for c in USED_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{attr_path} lacks the attribute column(s) {', '.join(missing)}")
    return names


def _labels(values: dict[str, str]) -> tuple[dict[str, str | None], list[tuple[str, str]]]:
    """One row's values -> ({attribute: class name or None}, [(attribute, reason) blank])."""
    problems: list[tuple[str, str]] = []
    hair = [cls for column, cls in HAIR_COLUMNS.items() if values[column] == "1"]
    if len(hair) > 1:
        problems.append(("hairstyle", UNKNOWN_VALUE))
    labels = {
        "gender": "male" if values["Male"] == "1" else "female",
        "age": None,
        "face_shape": "oval" if values["Oval_Face"] == "1" else None,
        "hairstyle": hair[0] if len(hair) == 1 else None,
    }
    return labels, problems


def load(root: Path) -> Dataset:
    """Load the pictures listed in list_attr_celeba.txt; bad rows and files are counted."""
    root = Path(root).expanduser().absolute()
    attr_path = root / ATTR_FILE
    try:
        lines = attr_path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{attr_path} cannot be read ({exc})") from exc
    names = _read_header(lines, attr_path)
    images = _index_images(root)
    report = ImportReport(format=FORMAT)
    seen: set[str] = set()
    rows: list[dict] = []
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        file_name, cells = parts[0], parts[1:]
        if len(cells) != len(names) or not _VALUES.issuperset(cells) or file_name in seen:
            report.skip(BAD_ROW, f"line {number}: {file_name}")
            continue
        seen.add(file_name)
        image_path = images.get(file_name)
        if image_path is None:
            report.skip(NO_IMAGE, file_name)
            continue
        try:
            check_readable(image_path)
        except BadImage:
            report.skip(UNREADABLE_IMAGE, file_name)
            continue
        labels, problems = _labels(dict(zip(names, cells, strict=True)))
        for key, reason in problems:
            report.blank(key, reason, file_name)
        rows.append({"path": image_path, **labels})
    report.n_loaded = len(rows)
    return Dataset(root=root, table=make_table(rows), report=report)
