"""Predict: upload photos (or pick a sample), get all four labels and a heat map for each."""

from __future__ import annotations

import os

import plotly.graph_objects as go
import streamlit as st

from pages.common import choose_dataset
from pages.model_cache import model_version, predictor_for
from portrait_core.explain import METHOD_HELP, METHODS, empty_map_note, overlay
from portrait_core.images import MAX_PIXELS, BadImage, open_rgb
from portrait_core.leaderboard import best_runs, default_choice, leaderboard, model_folders
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES

st.title("Predict")
dataset = choose_dataset()


folders = model_folders()
if not folders:
    st.warning("No trained model exists yet. Train one first.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

best = best_runs(leaderboard())
with st.sidebar:
    st.subheader("Models")
    chosen = {}
    for attr in ATTRIBUTE_KEYS:
        options = [k for k, v in folders.items() if attr in v["attributes"]]
        if not options:
            continue
        default = default_choice(attr, folders, best)
        chosen[attr] = st.selectbox(
            ATTRIBUTES[attr].title, options, index=options.index(default), key=f"model_{attr}"
        )
    method = st.selectbox("Explanation", METHODS, key="method", help=METHOD_HELP)
    opacity = st.slider("Heat-map opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")

uploads = st.file_uploader(
    "Upload photos",
    type=["jpg", "jpeg", "png", "webp", "bmp"],
    accept_multiple_files=True,
    key="uploads",
)
st.caption(
    f"Up to {st.get_option('server.maxUploadSize')} MB per file and "
    f"{MAX_PIXELS // 1_000_000} megapixels per picture: a larger file is refused, with a "
    "message beside it. Shrink it, or crop it to the face, and upload it again."
)
photos = []
for upload in uploads or []:
    try:
        photos.append((upload.name, open_rgb(upload.getvalue(), name=upload.name)))
    except BadImage as exc:
        st.error(f"{exc}. Upload a JPG, PNG, WebP or BMP photo.")
if not photos and dataset is not None and len(dataset):
    samples = dataset.table["path"].head(24).tolist()
    pick = st.selectbox(
        "…or pick a sample picture",
        ["(none)"] + [os.path.basename(p) for p in samples],
        key="sample",
    )
    if pick != "(none)":
        path = samples[[os.path.basename(p) for p in samples].index(pick)]
        try:  # the import checks headers only: a picture damaged further fails here
            photos.append((pick, open_rgb(path, name=pick)))
        except BadImage as exc:
            st.error(f"{exc}. Pick another sample picture.")
if not photos:
    st.info("Upload a photo or pick a sample picture to see the four labels and their heat maps.")
    st.stop()


def calibration_note(result: dict, temperature: float | None, calibrated_heads: int) -> str:
    """Whether a head's probabilities are temperature-scaled (portrait_core/calibration.py)."""
    if result.get("calibrated") and temperature is not None:
        return f"Calibrated on the validation split (T = {temperature:.2f})."
    if calibrated_heads:  # the model has calibration.json, without a temperature for this head
        return "Uncalibrated: too few labelled validation pictures to fit a temperature."
    return "Uncalibrated: this model predates calibration."


def probability_chart(attr: str, probs: dict[str, float]) -> go.Figure:
    fig = go.Figure(go.Bar(x=list(probs.values()), y=list(probs), orientation="h"))
    fig.update_layout(height=180, margin=dict(l=0, r=0, t=0, b=0), xaxis=dict(range=[0, 1]))
    return fig


for name, photo in photos:
    st.subheader(name)
    by_model: dict[str, list[str]] = {}
    for attr, label in chosen.items():
        by_model.setdefault(folders[label]["path"], []).append(attr)
    results, maps, used, notes, calibration = {}, {}, {}, [], {}
    for path, attrs in by_model.items():
        try:
            with st.spinner("Loading the model…"):
                predictor = predictor_for(path, model_version(path))
            predicted = predictor.predict(photo)
            use = method if method in predictor.explain_methods else "saliency"
            if use != method:
                notes.append(
                    f"{predictor.model_name} cannot use {method}; showing saliency instead."
                )
            labels = {a: r["label"] for a, r in predicted.items()}  # no second forward pass
            heat = predictor.explain(photo, use, classes=labels)
        except (ValueError, OSError) as exc:
            st.error(f"The model in {path} could not be used: {exc}")
            continue
        for attr in attrs:
            results[attr], maps[attr], used[attr] = predicted[attr], heat[attr], use
            calibration[attr] = calibration_note(
                predicted[attr], predictor.temperatures.get(attr), len(predictor.temperatures)
            )
    for note in notes:
        st.caption(note)
    left, right = st.columns([1, 3])
    left.image(photo, caption="photo", use_container_width=True)
    cols = right.columns(2)
    for i, attr in enumerate(a for a in ATTRIBUTE_KEYS if a in results):
        with cols[i % 2]:
            r = results[attr]
            st.markdown(
                f"**{ATTRIBUTES[attr].title}: {r['label']}** ({r['probs'][r['label']]:.0%})"
            )
            st.caption(calibration[attr])
            st.plotly_chart(probability_chart(attr, r["probs"]), key=f"chart_{name}_{attr}")
            st.image(
                overlay(photo, maps[attr], opacity),
                caption=f"{used[attr]} for {attr}",
                use_container_width=True,
            )
            empty = empty_map_note(used[attr], ATTRIBUTES[attr].title, r["label"], maps[attr])
            if empty:
                st.caption(empty)
