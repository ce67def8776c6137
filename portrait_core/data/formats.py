"""Which data source a path is, and one entry point that loads any of them into the same table.

Each source module offers FORMAT (its name), DESCRIPTION (what it looks like, one line),
detect(root) -> bool and load(root) -> Dataset. FORMATS lists them most specific first: the
first whose detect() accepts a path is the one that loads it.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from portrait_core.data import aihub, celeba, manifest, utkface
from portrait_core.data.table import Dataset

FORMATS: dict[str, ModuleType] = {
    module.FORMAT: module for module in (celeba, manifest, aihub, utkface)
}


class UnknownFormat(ValueError):
    """A path that is no data set Portrait Lab can read; the message lists the accepted formats."""


def accepted_formats() -> str:
    """One line per format: its name and what it looks like."""
    return "\n".join(f"- {name}: {module.DESCRIPTION}" for name, module in FORMATS.items())


def detect_format(root: str | Path) -> str:
    """The name of the first format in FORMATS that recognises root; UnknownFormat if none."""
    root = Path(root).expanduser()
    if not root.exists():
        raise UnknownFormat(
            f"{root} does not exist. Portrait Lab reads these formats:\n{accepted_formats()}"
        )
    for name, module in FORMATS.items():
        if module.detect(root):
            return name
    kind = "folder" if root.is_dir() else "file"
    hint = ""
    if root.is_file() and root.suffix.lower() == ".csv":
        hint = f" (a manifest needs a '{manifest.PATH_COLUMN}' column in its first line)"
    raise UnknownFormat(
        f"{root} is not a {kind} Portrait Lab can read{hint}. It reads these formats:\n"
        f"{accepted_formats()}"
    )


def load_dataset(path: str | Path) -> Dataset:
    """Detect the format of path (a folder, or a manifest .csv) and load it with its loader."""
    path = Path(path).expanduser()
    return FORMATS[detect_format(path)].load(path)
