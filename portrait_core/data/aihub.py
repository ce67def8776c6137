"""AI Hub's "persona-based virtual person montage" set: a folder of `N.png` + `N.json` pairs.

`N` is an integer and gaps are normal; the folder is searched recursively and pairs are matched
within one folder. Fields read (accepting the set's own misspelling `descripton` as well as
`description`): info[0].gender, info[0].age, descripton[0].face.type and
descripton[0].hairstyle.type, mapped to class names by the schema.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from portrait_core.data.table import (
    AGE_OUT_OF_RANGE,
    AGE_YEARS,
    MALFORMED_JSON,
    MISSING_FIELD,
    NO_IMAGE,
    NO_LABEL,
    UNKNOWN_VALUE,
    UNREADABLE_IMAGE,
    Dataset,
    ImportReport,
    make_table,
)
from portrait_core.images import IMAGE_SUFFIXES, BadImage, check_readable
from portrait_core.schema import (
    ATTRIBUTE_KEYS,
    AgeOutOfRange,
    UnknownValue,
    age_band,
    face_shape_from_raw,
    gender_from_raw,
    hairstyle_from_raw,
)

FORMAT = "aihub"
DESCRIPTION = (
    "a folder (subfolders searched too) of numbered pairs N.png + N.json, as in AI Hub's "
    "persona-based virtual person montage set"
)
NO_LABELS_FILE = "no labels file"  # an N.png with no N.json beside it: left out

DESCRIPTION_KEYS = ("descripton", "description")  # the data set's spelling first
_DETECT_SAMPLE = 20  # numbered JSON files opened at most while detecting


def _is_number(stem: str) -> bool:
    return stem.isascii() and stem.isdigit()


def _image_rank(name: str) -> int:
    """Which picture to pair when one N has several: .png first, then the other image types."""
    suffix = "." + name.rpartition(".")[2].lower()
    return 0 if suffix == ".png" else 1 + IMAGE_SUFFIXES.index(suffix)


def _scan(root: Path):
    """Walk once: {(folder, N): json name} and {(folder, N): image name}. Hidden folders skipped."""
    labels: dict[tuple[str, str], str] = {}
    images: dict[tuple[str, str], str] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            stem, dot, suffix = name.rpartition(".")
            if not dot or not _is_number(stem):
                continue
            suffix = "." + suffix.lower()
            key = (folder, stem)
            if suffix == ".json":
                labels[key] = name
            elif suffix in IMAGE_SUFFIXES:
                held = images.get(key)
                if held is None or _image_rank(name) < _image_rank(held):
                    images[key] = name
    return labels, images


def detect(root: Path) -> bool:
    """True when the folder holds a numbered N.json beside an N.png, or one with an `info` list."""
    root = Path(root)
    if not root.is_dir():
        return False
    opened = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = set(files)
        for name in sorted(files):
            stem, dot, suffix = name.rpartition(".")
            if not dot or suffix.lower() != "json" or not _is_number(stem):
                continue
            if any(stem + s in names or stem + s.upper() in names for s in IMAGE_SUFFIXES):
                return True
            if opened >= _DETECT_SAMPLE:
                return False
            opened += 1
            try:
                doc = json.loads(Path(folder, name).read_bytes())
            except (OSError, ValueError, RecursionError):  # see load()
                continue
            if isinstance(doc, dict) and isinstance(doc.get("info"), list):
                return True
    return False


class _Malformed(Exception):
    """The JSON is not the expected structure at all."""


def _first(doc: dict, keys: tuple[str, ...]) -> dict | None:
    """doc[key][0] for the first key present; None when absent or empty; _Malformed if mistyped."""
    for key in keys:
        if key not in doc or doc[key] is None:
            continue
        value = doc[key]
        if isinstance(value, dict):  # tolerate the object written without its list
            return value
        if not isinstance(value, list):
            raise _Malformed(f"{key} is a {type(value).__name__}, not a list")
        if not value:
            return None
        if not isinstance(value[0], dict):
            raise _Malformed(f"{key}[0] is a {type(value[0]).__name__}, not an object")
        return value[0]
    return None


def _type_of(description: dict | None, part: str) -> object:
    """descripton[0].<part>.type, or None when any step is missing."""
    if description is None:
        return None
    node = description.get(part)
    return node.get("type") if isinstance(node, dict) else None


def _years(raw: object) -> object:
    """A string of digits as a float; anything else as it is (age_band judges it)."""
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        # float, not int: int() refuses a string of over 4,300 digits (ValueError), while
        # float() reads it as inf, which age_band reports as out of range like any other
        return float(raw.strip())
    return raw


def _age(raw: object) -> str:
    return age_band(_years(raw))


def _raw_labels(doc: object) -> dict[str, object]:
    """The four raw values from one parsed JSON file; raises _Malformed for a foreign structure."""
    if not isinstance(doc, dict):
        raise _Malformed(f"top level is a {type(doc).__name__}, not an object")
    if "info" not in doc and not any(k in doc for k in DESCRIPTION_KEYS):
        raise _Malformed("neither 'info' nor 'descripton' is present")
    info = _first(doc, ("info",))
    description = _first(doc, DESCRIPTION_KEYS)
    return {
        "gender": None if info is None else info.get("gender"),
        "age": None if info is None else info.get("age"),
        "face_shape": _type_of(description, "face"),
        "hairstyle": _type_of(description, "hairstyle"),
    }


_MAPPERS = {
    "gender": gender_from_raw,
    "age": _age,
    "face_shape": face_shape_from_raw,
    "hairstyle": hairstyle_from_raw,
}


def map_labels(
    raw: dict[str, object],
) -> tuple[dict[str, str | None], list[tuple[str, str]]]:
    """Raw values -> ({attribute: class name or None}, [(attribute, reason) per blank label])."""
    labels: dict[str, str | None] = {}
    problems: list[tuple[str, str]] = []
    for key in ATTRIBUTE_KEYS:
        value = raw.get(key)
        labels[key] = None
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append((key, MISSING_FIELD))
            continue
        try:
            labels[key] = _MAPPERS[key](value)
        except AgeOutOfRange:
            problems.append((key, AGE_OUT_OF_RANGE))
        except UnknownValue:
            problems.append((key, UNKNOWN_VALUE))
    return labels, problems


def load(root: Path) -> Dataset:
    """Load every N.png + N.json pair under root; bad files and blank labels are counted."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    report = ImportReport(format=FORMAT)
    labels_files, image_files = _scan(root)
    rows: list[dict] = []

    def shown(folder: str, name: str) -> str:
        return Path(folder, name).relative_to(root).as_posix()

    for key in sorted(labels_files.keys() | image_files.keys()):
        folder = key[0]
        json_name = labels_files.get(key)
        image_name = image_files.get(key)
        if json_name is None:
            report.skip(NO_LABELS_FILE, shown(folder, image_name))
            continue
        if image_name is None:
            report.skip(NO_IMAGE, shown(folder, json_name))
            continue
        image_path = os.path.join(folder, image_name)
        try:
            check_readable(image_path)
        except BadImage:
            report.skip(UNREADABLE_IMAGE, shown(folder, image_name))
            continue
        # JSONDecodeError and UnicodeError are ValueErrors; json.loads raises RecursionError
        # on lists nested some thousands deep, which is just as malformed a file
        try:
            raw = _raw_labels(json.loads(Path(folder, json_name).read_bytes()))
        except (OSError, ValueError, RecursionError, _Malformed):
            report.skip(MALFORMED_JSON, shown(folder, json_name))
            continue
        labels, problems = map_labels(raw)
        if all(v is None for v in labels.values()):
            report.skip(NO_LABEL, shown(folder, json_name))
            continue
        for key, reason in problems:
            report.blank(key, reason, shown(folder, json_name))
        # the exact age behind a band it gave (age_band accepted it: a number in range)
        years = float(_years(raw["age"])) if labels["age"] is not None else None
        rows.append({"path": image_path, **labels, AGE_YEARS: years})
    report.n_loaded = len(rows)
    return Dataset(root=root, table=make_table(rows), report=report)
