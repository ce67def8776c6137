"""Where things live, relative to the project folder (not the current directory)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
# The embedded default data set that `make app` writes (6,000 synthetic montages, 128 px).
DEFAULT_DATA = Path(os.environ.get("PORTRAIT_LAB_DATA", PROJECT / "data" / "synthetic"))
RUNS = Path(os.environ.get("PORTRAIT_LAB_RUNS", PROJECT / "artifacts" / "runs"))
DEFAULT_MODEL = PROJECT / "artifacts" / "default"


def sweeps_beside(runs: str | Path) -> Path:
    """Tuning sweeps live beside the runs folder their trials go to (artifacts/runs ->
    artifacts/sweeps), so a runs folder chosen by PORTRAIT_LAB_RUNS or --out takes its sweeps
    along, and the app never shows sweeps whose trials it cannot find."""
    return Path(runs).parent / "sweeps"


SWEEPS = sweeps_beside(RUNS)
CACHE = Path(os.environ.get("PORTRAIT_LAB_CACHE", PROJECT / "artifacts" / "cache"))


def serve_command(port: int) -> list[str]:
    """`streamlit run app.py`, headless on 127.0.0.1:port (the browser tests and bench start it)."""
    import sys

    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(PROJECT / "app.py"),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
