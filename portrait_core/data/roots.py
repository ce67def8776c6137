"""Where the app may read data: below the allowed data roots, and nowhere else.

The app's *Folder path* reads whatever folder it is given, so on a shared machine it must not
reach outside the folders the person running the server chose. The roots are the project's
`data/`, the embedded default data set (PORTRAIT_LAB_DATA), and the folders named in
PORTRAIT_LAB_DATA_ROOTS (separated by ':', as in PATH). A path is judged after resolving every
symlink, so a link inside a root that points outside it is refused, and so is a data set whose
pictures (a manifest's rows, linked files) lie outside the roots.

The command line is not limited: whoever runs it already has the files it names.
"""

from __future__ import annotations

import os
from pathlib import Path

from portrait_core import paths

ROOTS_ENV = "PORTRAIT_LAB_DATA_ROOTS"
EXAMPLES = 3  # outside pictures named in the message


class PathNotAllowed(ValueError):
    """A path outside the allowed data roots; the message names the roots and how to add one."""


def allowed_roots() -> list[Path]:
    """The resolved roots, read at call time: data/, the default data set, $ROOTS_ENV."""
    found = [paths.PROJECT / "data", Path(paths.DEFAULT_DATA)]
    found += [Path(p) for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    roots: list[Path] = []
    for root in found:
        resolved = root.expanduser().resolve()
        if resolved not in roots:
            roots.append(resolved)
    return roots


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _refusal(what: str, roots: list[Path]) -> str:
    listed = ", ".join(f"`{r}`" for r in roots)
    return (
        f"{what} outside the folders this app may read ({listed}). To allow another folder, "
        f"start the app with {ROOTS_ENV}=/path/to/folder (several separated by '{os.pathsep}')."
    )


def check_allowed(path: str | Path) -> Path:
    """The path, resolved, if it lies below an allowed root; PathNotAllowed otherwise."""
    roots = allowed_roots()
    resolved = Path(path).expanduser().resolve()
    if not _inside(resolved, roots):
        shown = str(path) if str(path) == str(resolved) else f"{path} (which leads to {resolved})"
        raise PathNotAllowed(_refusal(f"{shown} is", roots))
    return resolved


def check_pictures_allowed(picture_paths) -> None:
    """PathNotAllowed naming a few pictures that resolve outside the roots, if any do."""
    roots = allowed_roots()
    outside = [p for p in picture_paths if not _inside(Path(p).resolve(), roots)]
    if outside:
        examples = ", ".join(str(p) for p in outside[:EXAMPLES])
        raise PathNotAllowed(
            _refusal(f"{len(outside):,} of this data set's pictures lie (e.g. {examples})", roots)
        )
