"""The sidebar data-set chooser every page shares, and the cached loads behind it.

Loads are cached on (path, modification time), so moving between pages or changing a widget
never re-reads thousands of files, while a folder that changed on disk is read again.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from portrait_core import paths
from portrait_core.app_support import blank_label_rows, data_version, skipped_rows, split_sizes
from portrait_core.data.formats import UnknownFormat, accepted_formats, load_dataset
from portrait_core.data.roots import (
    ROOTS_ENV,
    PathNotAllowed,
    allowed_roots,
    check_allowed,
    check_pictures_allowed,
)
from portrait_core.data.stats import dataset_stats
from portrait_core.data.table import Dataset

# How Compare and Train show metrics tables (columns missing from a table are ignored).
METRIC_COLUMNS = {
    "attribute": "attribute",
    "accuracy": st.column_config.NumberColumn(format="%.3f"),
    "balanced_accuracy": st.column_config.NumberColumn("balanced accuracy", format="%.3f"),
    "macro_f1": st.column_config.NumberColumn("macro F1", format="%.3f"),
    "majority_baseline": st.column_config.NumberColumn(
        "majority baseline",
        format="%.3f",
        help="Accuracy of always answering the training split's largest class",
    ),
    "majority_class": "majority class",
    "n_test": st.column_config.NumberColumn("test pictures", format="localized"),
}

DEFAULT_SOURCE = "Embedded synthetic default"
FOLDER_SOURCE = "Folder path"
SOURCES = (DEFAULT_SOURCE, FOLDER_SOURCE)
# Widget keys kept across pages: each page renders its own copy of the sidebar, and Streamlit
# forgets a widget's value when a page without that very widget runs (see _keep_across_pages).
SHARED_KEYS = ("data_source", "data_path")
RESOLVED_KEY = "data_path_resolved"  # the path in use, for pages that need it (Train passes it on)
PROBLEM_KEY = "data_problem"  # why no data set is loaded, for the page's main area


_PAGES_MODE_CHECKED = False


def _leave_pages_directory_mode() -> None:
    """Rerun through app.py when Streamlit ran this page directly as an old-style pages/ app.

    A folder named pages/ beside the entry point makes Streamlit start in its first multipage
    mode (one page per file in pages/) until some run calls st.navigation. So when the first
    request a fresh server gets is a deep link such as /train, Streamlit runs pages/train.py on
    its own: no page config, common.py listed as a page, and that mode sticks for the process.
    Turning the flag off and rerunning sends that request through app.py's st.navigation,
    which opens the same page. (Renaming pages/ would avoid this; see the streamlit repo's
    PR #10276 discussion.) A no-op when Streamlit's internals differ.

    Called by choose_dataset, which every page calls near its top, once per process (the mode
    is decided by a server's first run), not at this module's import: a rerun raised while the
    module was being imported left it half-imported for the sessions importing it at the same
    moment ("cannot import name 'choose_dataset'": 2 to 7 of 8 sessions opened on a fresh server
    at once, tests/test_browser_load.py). Not on every run either: AppTest starts each run in
    that mode, and the rerun swallowed a button's click.
    """
    global _PAGES_MODE_CHECKED
    if _PAGES_MODE_CHECKED:
        return
    _PAGES_MODE_CHECKED = True
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return
    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False
        st.rerun()


@st.cache_data(show_spinner="Reading the data set…", max_entries=4)
def load_cached(path: str, version: float, check_roots: bool = False) -> Dataset:
    """load_dataset(path); version (the folder's mtime) is only part of the cache key.

    check_roots: refuse (PathNotAllowed) a data set whose pictures resolve outside the allowed
    data roots, e.g. a manifest's '../' rows or links to other folders (data/roots.py).
    """
    dataset = load_dataset(path)
    if check_roots:
        check_pictures_allowed(dataset.table["path"])
    return dataset


@st.cache_data(show_spinner="Counting classes per split…", max_entries=4)
def stats_cached(path: str, version: float) -> dict:
    """dataset_stats of the data set at path (writes its split file beside the data once)."""
    return dataset_stats(load_cached(path, version))


@st.cache_data(max_entries=4)
def split_sizes_cached(path: str, version: float) -> dict[str, int]:
    """Pictures per split (train/val/test) of the data set at path."""
    return split_sizes(load_cached(path, version))


def _keep_across_pages() -> None:
    # Re-assigning a widget's value marks it as set by the app, which Streamlit keeps when the
    # widget is not drawn by the page that runs next (the documented multipage idiom).
    for key in SHARED_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def _show_error(title: str, exc: Exception, what_to_do: str) -> None:
    """A short error in the sidebar; a long message's remaining lines go in an expander."""
    first, _, rest = str(exc).partition("\n")
    if rest and first.endswith(":") and ". " in first:  # "X does not exist. It reads these:"
        first, _, lead = first.rpartition(". ")
        first, rest = first + ".", f"{lead}\n{rest}"
    st.sidebar.error(f"**{title}** {first}\n\n{what_to_do}")
    if rest.strip():
        with st.sidebar.expander("Details"):
            st.markdown(rest)
    st.session_state[PROBLEM_KEY] = first


def _load(path: Path, check_roots: bool) -> Dataset | None:
    """Load path with the cache; any failure becomes a message in the sidebar, never a traceback."""
    try:
        return load_cached(str(path), data_version(path), check_roots)
    except PathNotAllowed as exc:
        _show_error("Not a folder this app may read.", exc, "")
    except UnknownFormat as exc:
        _show_error(
            "Not a data set Portrait Lab can read.",
            exc,
            "Check the path, or point it at one of the formats under Details.",
        )
    except FileNotFoundError as exc:
        _show_error("A file is missing.", exc, "Check the path and that the files are there.")
    except PermissionError as exc:
        _show_error("Permission denied.", exc, "Choose a folder this app's user may read.")
    except (ValueError, OSError) as exc:
        _show_error("The data set could not be read.", exc, "Check the files the message names.")
    return None


def _report(dataset: Dataset) -> None:
    """The import report in the sidebar: pictures left out and labels left blank, kept apart."""
    report = dataset.report
    st.sidebar.caption(f"`{dataset.root}`")
    headline = [f"**{report.n_loaded:,}** pictures loaded ({report.format})"]
    if report.n_skipped:
        headline.append(f"**{report.n_skipped:,}** left out")
    if report.n_blank:
        headline.append(f"**{report.n_blank:,}** labels left blank")
    st.sidebar.markdown(", ".join(headline))
    if report.n_skipped:
        with st.sidebar.expander(f"Pictures left out ({report.n_skipped:,})"):
            st.caption(
                "A missing or unreadable picture or labels file leaves the whole picture out. "
                "A few example files per reason:"
            )
            for row in skipped_rows(report).itertuples():
                st.markdown(f"- **{row.count:,}** {row.reason}")
                if row.examples:
                    st.caption(row.examples)
    if report.n_blank:
        with st.sidebar.expander(f"Labels left blank ({report.n_blank:,})"):
            st.caption(
                "These pictures were loaded: a bad value leaves only that label blank, and the "
                "picture still trains the other heads. A few example files per label and reason:"
            )
            for row in blank_label_rows(report).itertuples():
                st.markdown(f"- {row.attribute}: **{row.count:,}** {row.reason}")
                if row.examples:
                    st.caption(row.examples)


def choose_dataset() -> Dataset | None:
    """Draw the data-set chooser in the sidebar; return the loaded Dataset, or None (explained).

    Also stores the resolved path in st.session_state["data_path_resolved"] (None when no data
    set is loaded), for pages that pass it on, e.g. to a training run.
    """
    _leave_pages_directory_mode()
    _keep_across_pages()
    st.session_state[RESOLVED_KEY] = None
    st.session_state[PROBLEM_KEY] = None
    st.sidebar.subheader("Data set")
    source = st.sidebar.radio(
        "Source", SOURCES, key="data_source", label_visibility="collapsed", horizontal=False
    )
    if source == DEFAULT_SOURCE:
        path = Path(paths.DEFAULT_DATA).expanduser().absolute()
        if not path.exists():
            st.sidebar.warning(
                "**The embedded synthetic data set has not been made yet.**\n\n"
                f"It belongs in `{path}`. Run `make data` in the project folder (about a minute), "
                "then reload this page, or choose *Folder path* to use your own pictures."
            )
            st.session_state[PROBLEM_KEY] = "the embedded synthetic set has not been made yet."
            return None
    else:
        text = st.sidebar.text_input(
            "Folder or manifest .csv",
            key="data_path",
            placeholder="/path/to/pictures",
            help="Formats Portrait Lab reads:\n\n"
            + accepted_formats()
            + "\n\nThis app reads only below these folders: "
            + ", ".join(f"`{root}`" for root in allowed_roots())
            + f" (add more with {ROOTS_ENV}).",
        )
        if not text.strip():
            st.sidebar.info("Type the path of a folder of pictures, or of a manifest .csv.")
            return None
        path = Path(text.strip()).expanduser().absolute()
        try:
            check_allowed(path)
        except PathNotAllowed as exc:
            _show_error("Not a folder this app may read.", exc, "")
            return None

    dataset = _load(path, check_roots=source == FOLDER_SOURCE)
    if dataset is None:
        return None
    st.session_state[RESOLVED_KEY] = str(path)
    _report(dataset)
    if st.sidebar.button("Reload from disk", key="data_reload", help="Read the folder again"):
        for cached in (load_cached, stats_cached, split_sizes_cached):
            cached.clear()
        st.rerun()
    return dataset


def need_dataset() -> Dataset:
    """choose_dataset(), stopping the page with a pointer to the sidebar when there is none."""
    dataset = choose_dataset()
    if dataset is None:
        problem = st.session_state.get(PROBLEM_KEY)
        if problem:
            st.info(f"No data set is loaded: {problem} The sidebar says what to do.")
        else:
            st.info("Choose a data set in the sidebar to see this page.")
        st.stop()
    if len(dataset) == 0:
        st.warning(
            "No picture could be loaded from this data set. The import report in the sidebar "
            "says why each record was left out."
        )
        st.stop()
    return dataset
