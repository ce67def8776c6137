"""The Predict page's cached model loader, and its warm-up when the app starts.

Opening Predict the first time used to cost about 14 s here: importing TensorFlow, loading the
model and tracing its first prediction and Grad-CAM. `warm_up()` (called by app.py, once per
server) does that in a background thread for the models Predict opens with, through the very
cache Predict reads, so a user who opens Predict a little later finds the models ready. The
Dataset, Train and Compare pages never wait for it: they do not import TensorFlow.
Set PORTRAIT_LAB_WARM_UP=0 to turn it off.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import streamlit as st

log = logging.getLogger(__name__)


def model_version(path: str | Path) -> float:
    """The latest modification time of the model file, its calibration.json and metrics.json:
    part of the cache key, so a retrained model reloads, and so does one calibrated or evaluated
    after it was opened (a run still training is calibrated when it ends, without rewriting
    model.keras)."""
    from portrait_core.calibration import CALIBRATION_FILE

    times = [os.path.getmtime(os.path.join(path, "model.keras"))]
    # calibration.json: its temperatures; metrics.json: the test scores and the most faithful
    # explanation the Predictor reads (rewritten by `evaluate`)
    for name in (CALIBRATION_FILE, "metrics.json"):
        if os.path.exists(os.path.join(path, name)):
            times.append(os.path.getmtime(os.path.join(path, name)))
    return max(times)


@st.cache_resource(show_spinner=False, max_entries=8)  # the warm-up thread has no page to spin on
def predictor_for(path: str, version: float):
    """The loaded model in `path`; Predict shows its own spinner around the call."""
    from portrait_core import load_predictor  # TensorFlow loads here, only when a model is needed
    from portrait_core.tf_startup import quiet_tensorflow

    quiet_tensorflow()  # its start-up logging is not for the app's terminal
    return load_predictor(path)


def opening_models() -> list[str]:
    """The model folders Predict selects by default (one per attribute, deduplicated)."""
    from portrait_core.leaderboard import best_runs, default_choice, leaderboard, model_folders
    from portrait_core.schema import ATTRIBUTE_KEYS

    folders = model_folders()
    best = best_runs(leaderboard())
    chosen = (default_choice(a, folders, best) for a in ATTRIBUTE_KEYS)
    return list(dict.fromkeys(folders[c]["path"] for c in chosen if c))


def _warm(paths: list[str]) -> None:
    from PIL import Image

    photo = Image.new("RGB", (96, 128), (128, 120, 110))
    for path in paths:
        try:
            predictor = predictor_for(path, model_version(path))
            labels = {a: r["label"] for a, r in predictor.predict(photo).items()}
            predictor.explain(photo, predictor.explain_methods[0], classes=labels)
        except Exception:  # a warm-up must never break the app; Predict reports real errors
            log.warning("warm-up of %s failed", path, exc_info=True)


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread | None:
    """Start warming Predict's models in a daemon thread (once per server process)."""
    if os.environ.get("PORTRAIT_LAB_WARM_UP", "1") == "0":
        return None
    try:
        paths = opening_models()
    except Exception:
        log.warning("warm-up: could not list the models", exc_info=True)
        return None
    thread = threading.Thread(target=_warm, args=(paths,), name="predict-warm-up", daemon=True)
    thread.start()
    return thread
