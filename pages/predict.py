"""Predict: upload photos (or a zip, or pick a sample); the faces in each are found, cropped as
the models were trained, and labelled, with a heat map per head and what each model learnt from."""

from __future__ import annotations

import os

import plotly.graph_objects as go
import streamlit as st

from pages.common import choose_dataset
from pages.model_cache import model_version, predictor_for
from portrait_core.explain import (
    DEFAULT_OPACITY,
    METHOD_HELP,
    METHODS,
    colour_bar,
    empty_map_note,
    overlay,
)
from portrait_core.faces import detect_faces, draw_boxes
from portrait_core.images import MAX_PIXELS, BadImage, open_rgb
from portrait_core.leaderboard import best_runs, default_choice, leaderboard, model_folders
from portrait_core.photo_results import (
    label_subjects,
    pictures_in_zip,
    result_rows,
    results_table,
    subjects,
    thumbnail_url,
)
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES

st.title("Predict")
MOST_FAITHFUL = "most faithful"
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
    find_faces = st.toggle(
        "Find faces first",
        value=True,
        key="faces",
        help="Label each face found in the photo, cropped as the model's training pictures "
        "frame a face. Turn it off for montages and pictures already cropped to one face.",
    )
    method = st.selectbox(
        "Explanation",
        (MOST_FAITHFUL, *METHODS),
        key="method",
        help=f"{MOST_FAITHFUL}: for each model, the method whose maps proved most faithful on "
        "its test split (deletion and insertion AUC, shown on Compare). " + METHOD_HELP,
    )
    opacity = st.slider("Heat-map opacity", 0.0, 1.0, DEFAULT_OPACITY, 0.05, key="opacity")
    compare_methods = st.toggle(
        "Compare methods",
        key="compare_methods",
        help="Show every method's map side by side for one attribute.",
    )

uploads = st.file_uploader(
    "Upload photos, or a zip of them",
    type=["jpg", "jpeg", "png", "webp", "bmp", "zip"],
    accept_multiple_files=True,
    key="uploads",
)
st.caption(
    f"Up to {st.get_option('server.maxUploadSize')} MB per file and "
    f"{MAX_PIXELS // 1_000_000} megapixels per picture: a larger file is refused, with a "
    "message beside it. Shrink it, or crop it to the face, and upload it again."
)

# (name, photo or None, error or None, raw bytes, uploaded?)
photos: list[tuple[str, object, str | None, bytes, bool]] = []


def add_picture(name: str, data: bytes, uploaded: bool) -> None:
    try:
        photos.append((name, open_rgb(data, name=name), None, data, uploaded))
    except BadImage as exc:
        photos.append((name, None, str(exc), data, uploaded))


for upload in uploads or []:
    data = upload.getvalue()
    if upload.name.lower().endswith(".zip"):
        try:
            for inner, inner_data in pictures_in_zip(data, upload.name):
                add_picture(f"{upload.name}/{inner}", inner_data, True)
        except ValueError as exc:
            st.error(str(exc))
    else:
        add_picture(upload.name, data, True)
for _name, _photo, error, _, _ in photos:
    if error:
        st.error(f"{error}. Upload a JPG, PNG, WebP or BMP photo.")
if not uploads and dataset is not None and len(dataset):
    samples = dataset.table["path"].head(24).tolist()
    pick = st.selectbox(
        "…or pick a sample picture",
        ["(none)"] + [os.path.basename(p) for p in samples],
        key="sample",
    )
    st.caption("A sample of the data set is labelled whole, framed as the training pictures.")
    if pick != "(none)":
        path = samples[[os.path.basename(p) for p in samples].index(pick)]
        try:  # the import checks headers only: a picture damaged further fails here
            with open(path, "rb") as f:
                add_picture(pick, f.read(), False)
        except OSError as exc:
            st.error(f"{pick} could not be read ({exc}). Pick another sample picture.")
        if photos and photos[-1][2]:
            st.error(f"{photos[-1][2]}. Pick another sample picture.")
if not any(p[1] is not None for p in photos):
    if not photos:
        st.info(
            "Upload a photo or pick a sample picture to see the four labels and their heat maps."
        )
    st.stop()


@st.cache_data(show_spinner=False, max_entries=256)
def faces_in(data: bytes, name: str):
    """The faces MTCNN finds in a picture (cached: a slider's rerun does not search again)."""
    return detect_faces(open_rgb(data, name=name))


by_model: dict[str, list[str]] = {}
for attr, label in chosen.items():
    by_model.setdefault(folders[label]["path"], []).append(attr)
predictors, model_names = {}, {v["path"]: k for k, v in folders.items()}
for path in by_model:
    try:
        with st.spinner("Loading the model…"):
            predictors[path] = predictor_for(path, model_version(path))
    except (ValueError, OSError) as exc:
        st.error(f"The model in {path} could not be used: {exc}")
by_model = {p: a for p, a in by_model.items() if p in predictors}
if not by_model:
    st.stop()


def trained_on_text(info: dict) -> str:
    what = "synthetic montages" if info["synthetic"] else f"{info['format']} pictures"
    count = f"{info['n_images']:,} " if isinstance(info.get("n_images"), int) else ""
    return f"{count}{what} from `{info['path']}`"


with st.expander("What the models learnt from", expanded=False):
    for path, attrs in by_model.items():
        p = predictors[path]
        heads = ", ".join(ATTRIBUTES[a].title for a in attrs)
        st.markdown(
            f"**{model_names.get(path, path)}** ({p.model_name}; {heads}): trained on "
            f"{trained_on_text(p.trained_on)}."
        )
synthetic_models = [path for path in by_model if predictors[path].trained_on["synthetic"]]
if synthetic_models and any(p[4] for p in photos):
    names = ", ".join(f"**{model_names.get(p, p)}**" for p in synthetic_models)
    st.warning(
        f"{names} learnt only from drawn, synthetic montages: its labels for real photos mean "
        "little. Train a model on real portraits (AI Hub's, UTKFace, your own) for labels "
        "worth reading.",
        icon=":material/warning:",
    )
    st.page_link("pages/train.py", label="Train on real portraits", icon=":material/school:")


def label_photo(name: str, photo, data: bytes, uploaded: bool):
    """(labelled subjects, faces found or None with detection off). No face found: nothing
    is labelled unless the user asked for the whole picture (its checkbox, below). A sample
    picture of the data set is labelled whole: it is framed as the training pictures were."""
    faces = faces_in(data, name) if find_faces and uploaded else None
    if faces == [] and not st.session_state.get(f"whole_{name}"):
        return [], faces
    found = subjects(photo, faces or None)
    return label_subjects(photo, found, predictors, by_model), faces


rows, thumbs, labelled = [], [], {}
for name, photo, error, data, uploaded in photos:
    if photo is None:
        rows += result_rows(name, [], error)
        thumbs.append(None)
        continue
    found, faces = label_photo(name, photo, data, uploaded)
    labelled[name] = (photo, found, faces)
    for row in result_rows(name, found):
        rows.append(row)
        thumbs.append(thumbnail_url(photo))

if len(photos) > 1:
    table = results_table(rows, thumbs)
    st.subheader(f"{len(photos)} pictures")
    st.dataframe(
        table,
        key="results_table",
        hide_index=True,
        column_config={"picture": st.column_config.ImageColumn("picture", width="small")},
    )
    st.download_button(
        "Download the results (CSV)",
        results_table(rows).to_csv(index=False),
        file_name="portrait-lab-predictions.csv",
        mime="text/csv",
        key="download_csv",
    )
    named = [n for n in labelled]
    if not named:
        st.stop()
    detail = st.selectbox("Details for", named, key="detail")
else:
    detail = next(iter(labelled))


def probability_chart(probs: dict[str, float]) -> go.Figure:
    fig = go.Figure(go.Bar(x=list(probs.values()), y=list(probs), orientation="h"))
    fig.update_layout(height=180, margin=dict(l=0, r=0, t=0, b=0), xaxis=dict(range=[0, 1]))
    return fig


def calibration_note(result: dict, temperature: float | None, calibrated_heads: int) -> str:
    """Whether a head's probabilities are temperature-scaled (portrait_core/calibration.py)."""
    if result.get("calibrated") and temperature is not None:
        return f"Calibrated on the validation split (T = {temperature:.2f})."
    if calibrated_heads:  # the model has calibration.json, without a temperature for this head
        return "Uncalibrated: too few labelled validation pictures to fit a temperature."
    return "Uncalibrated: this model predates calibration."


def score_note(attr: str, predictor) -> str:
    """How often this head is right on its model's own test split."""
    s = predictor.test_scores.get(attr)
    if not s:
        return "No test metrics recorded for this head."
    return (
        f"This head is right {s['accuracy']:.0%} of the time on its test split "
        f"(balanced accuracy {s['balanced_accuracy']:.0%}, {s['n']:,} pictures)."
    )


def show_subject(name: str, subject) -> None:
    picture_of = {a: subject.pictures[p] for p, attrs in by_model.items() for a in attrs}
    maps, used, notes = {}, {}, []
    for path, attrs in by_model.items():
        predictor = predictors[path]
        if method == MOST_FAITHFUL:
            use = predictor.default_method
            if predictor.most_faithful is None:
                notes.append(
                    f"{model_names.get(path, path)}: faithfulness not measured; showing {use}. "
                    "`python -m portrait_core evaluate RUN_ID` measures it."
                )
        else:
            use = method if method in predictor.explain_methods else "saliency"
            if use != method:
                notes.append(
                    f"{predictor.model_name} cannot use {method}; showing saliency instead."
                )
        labels = {a: subject.labels[a]["label"] for a in attrs}
        heat = predictor.explain(subject.pictures[path], use, classes=labels)
        for attr in attrs:
            maps[attr], used[attr] = heat[attr], use
    for note in notes:
        st.caption(note)
    left, right = st.columns([1, 3])
    first = next(iter(by_model))
    caption = "the whole picture" if subject.face is None else f"face {subject.number}, as cropped"
    left.image(subject.pictures[first], caption=caption, use_container_width=True)
    if subject.face is not None:
        left.caption(f"found at {subject.face.confidence:.0%} confidence")
    for path, attrs in by_model.items():  # what each model learnt from, beside its labels
        heads = ", ".join(ATTRIBUTES[a].title for a in attrs)
        right.caption(
            f"{heads}: **{model_names.get(path, path)}** ({predictors[path].model_name}), "
            f"trained on {trained_on_text(predictors[path].trained_on)}."
        )
    cols = right.columns(2)
    model_of = {a: p for p, attrs in by_model.items() for a in attrs}
    tag = f"{name}_{subject.number or 0}"
    for i, attr in enumerate(a for a in ATTRIBUTE_KEYS if a in subject.labels):
        predictor = predictors[model_of[attr]]
        with cols[i % 2]:
            r = subject.labels[attr]
            st.markdown(
                f"**{ATTRIBUTES[attr].title}: {r['label']}** ({r['probs'][r['label']]:.0%})"
            )
            st.caption(
                calibration_note(r, predictor.temperatures.get(attr), len(predictor.temperatures))
            )
            st.caption(score_note(attr, predictor))
            st.plotly_chart(probability_chart(r["probs"]), key=f"chart_{tag}_{attr}")
            st.image(
                overlay(picture_of[attr], maps[attr], opacity),
                caption=f"{used[attr]} for {attr}",
                use_container_width=True,
            )
            empty = empty_map_note(used[attr], ATTRIBUTES[attr].title, r["label"], maps[attr])
            if empty:
                st.caption(empty)
    right.image(colour_bar(320, 16), caption="heat: low → high (where the label's score came from)")
    if compare_methods:
        show_methods(subject, tag)


def show_methods(subject, tag: str) -> None:
    """Every method's map for one attribute, side by side on the same picture."""
    attrs = [a for a in ATTRIBUTE_KEYS if a in subject.labels]
    attr = st.selectbox(
        "Methods side by side for",
        attrs,
        format_func=lambda a: ATTRIBUTES[a].title,
        key=f"methods_attr_{tag}",
    )
    path = next(p for p, a in by_model.items() if attr in a)
    predictor = predictors[path]
    picture = subject.pictures[path]
    label = subject.labels[attr]["label"]
    cols = st.columns(len(predictor.explain_methods))
    for col, m in zip(cols, predictor.explain_methods):
        heat = predictor.explain(picture, m, classes={attr: label})[attr]
        best = " (most faithful)" if m == predictor.most_faithful else ""
        col.image(overlay(picture, heat, opacity), caption=f"{m}{best}", use_container_width=True)


photo, found, faces = labelled[detail]
st.subheader(detail)
if faces == []:
    st.warning(
        f"No face found in {detail}. The models learnt from face-centred portraits; labelled "
        "whole, a picture's background and clothes weigh in."
    )
    if not st.checkbox("Label the whole picture", key=f"whole_{detail}"):
        st.stop()
elif faces:
    st.image(
        draw_boxes(photo, faces),
        caption=f"{len(faces)} face{'s' if len(faces) > 1 else ''} found",
        width=min(640, photo.width),
    )
for subject in found:
    if subject.number is not None:
        st.markdown(f"#### Face {subject.number}")
    show_subject(detail, subject)
