"""Compare: the leaderboard of finished runs, learning curves side by side, confusion matrices,
per-class precision and recall, the best run per attribute (Predict's default), calibration
errors and the robustness table, how faithful each explanation method's heat maps are, tuning
sweeps (pages/sweep_panels.py), deleting runs.

Reads run folders only (portrait_core.leaderboard, portrait_core.run_view): no TensorFlow here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go
import streamlit as st

from pages import sweep_panels
from pages.common import METRIC_COLUMNS, choose_dataset
from portrait_core import run_view as rv
from portrait_core.calibration import ECE_BINS, MIN_PICTURES
from portrait_core.faithfulness import RANDOM, faithfulness_measured, faithfulness_table
from portrait_core.leaderboard import best_runs, leaderboard
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

CHART_HEIGHT = 340
RUN_COLOURS = ("#3366CC", "#F29E4C", "#4DAF7C", "#B55D9E", "#E15759", "#76B7B2", "#9C755F")
MEASURE_COLOURS = {"precision": "#3366CC", "recall": "#F29E4C"}
TITLES = {a: ATTRIBUTES[a].title for a in ATTRIBUTE_KEYS}
CURVE_RUNS = 3  # runs drawn by default: the newest few
ECE_HELP = (
    f"Expected calibration error on the test split: the pictures are sorted into {ECE_BINS} "
    "equal-width bins by the probability of their top label, and ECE is the mean, over the "
    "pictures, of the gap between their bin's accuracy and its mean probability (top-label "
    "ECE). Lower is better: a model that says 90 % should be right 9 times in 10. *After* "
    "applies the temperature T fitted on the validation split, softmax(log(p) / T): T > 1 "
    "tempers over-confident probabilities, T < 1 sharpens timid ones; the label never changes."
)
ROBUSTNESS_HELP = (
    "The test pictures again, degraded the ways uploaded photos are (made small, blurred, "
    "saved as a poor JPEG, under- and over-exposed), at the model's input size, and scored. "
    "The drop is the clean score minus the degraded one: positive means worse."
)
FAITHFULNESS_HELP = (
    "Does a heat map point at the pixels the model used? Deletion: the test picture's pixels "
    "are set to the training mean (what the model sees as nothing), hottest first, a tenth at "
    "a time, and the probability of the predicted label is followed down; the area under that "
    "curve is small when the map is right. Insertion: from a blurred copy, the hottest pixels "
    "are put back first; the area is large when the map is right. Both lie between 0 and 1 "
    "(Petsiuk et al. 2018, RISE). 'random' maps show what chance scores on the same pictures."
)
FLAG_STYLE = "background-color: rgba(225, 87, 89, 0.25); font-weight: 600"
BEST_STYLE = "background-color: rgba(77, 175, 124, 0.25); font-weight: 600"
FAITHFULNESS_COLUMNS = {
    "deletion AUC": st.column_config.NumberColumn(help="Lower is better", format="%.3f"),
    "insertion AUC": st.column_config.NumberColumn(help="Higher is better", format="%.3f"),
    "insertion − deletion": st.column_config.NumberColumn(help="Higher is better", format="%+.3f"),
    "gain over random": st.column_config.NumberColumn(
        help="Insertion minus deletion, less that of random maps on the same pictures: what "
        "ranks the methods. Near 0: the map knows no more than chance.",
        format="%+.3f",
    ),
    "pictures": st.column_config.NumberColumn(
        help="Test pictures measured (Score-CAM, being slow, on a third of them)"
    ),
    "most faithful": st.column_config.CheckboxColumn(
        help="The best method for this model, by its gain over random averaged over the heads"
    ),
}
CALIBRATION_HEADINGS = {"ece_before": "ECE before", "ece_after": "ECE after", "temperature": "T"}
BOARD_COLUMNS = {
    **METRIC_COLUMNS,
    "run": "run",
    "data": "data set",
    "image_size": st.column_config.NumberColumn("image px"),
    "params": st.column_config.NumberColumn("parameters", format="compact"),
    "train_seconds": st.column_config.NumberColumn("training s", format="%.0f"),
    "ms_per_image": st.column_config.NumberColumn("ms / picture", format="%.1f"),
    "ece_before": st.column_config.NumberColumn("ECE", format="%.3f", help=ECE_HELP),
    "ece_after": st.column_config.NumberColumn(
        "ECE calibrated", format="%.3f", help="The ECE after temperature scaling. " + ECE_HELP
    ),
    "temperature": st.column_config.NumberColumn(
        "T", format="%.2f", help="The temperature fitted on the validation split"
    ),
}

# scores first; the long run id last (it scrolls into view; the best-run table shows it too)
BOARD_ORDER = [
    "attribute",
    "model",
    "balanced_accuracy",
    "accuracy",
    "macro_f1",
    "majority_baseline",
    "ece_before",
    "ece_after",
    "temperature",
    "data",
    "image_size",
    "params",
    "train_seconds",
    "ms_per_image",
    "n_test",
    "run",
]


def flagged(table: pd.DataFrame, worse: pd.DataFrame) -> Styler:
    """Scores to 3 places, drops signed, the cells whose drop is over the flag shaded."""
    shade = worse.map(lambda w: FLAG_STYLE if w else "").to_numpy()
    formats = {c: "{:+.3f}" if c == "drop" else "{:.3f}" for c in table.columns}
    return table.style.format(formats, na_rep="not measured").apply(lambda _: shade, axis=None)


def _tidy(fig: go.Figure, height: int = CHART_HEIGHT) -> go.Figure:
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0.0),
    )
    return fig


def curves_chart(histories: dict[str, list[dict]], key: str) -> go.Figure:
    frame = rv.overlay_frame(histories, key)
    fig = go.Figure(
        [
            go.Scatter(
                x=part["epoch"].tolist(),
                y=part["value"].tolist(),
                mode="lines+markers",
                name=run_id,
                line=dict(color=RUN_COLOURS[i % len(RUN_COLOURS)]),
                hovertemplate=f"%{{y:.3f}}<extra>{run_id}</extra>",
            )
            for i, (run_id, part) in enumerate(frame.groupby("run", sort=False))
        ]
    )
    fig.update_xaxes(title="epoch", dtick=1 if frame["epoch"].max() <= 30 else None)
    fig.update_yaxes(title=key)
    fig = _tidy(fig)
    fig.update_layout(hovermode="x unified")
    return fig


def confusion_chart(metrics: dict, attr: str) -> go.Figure:
    """Counts as text; colour = the share of each true class (a row), so small classes show too."""
    grid = rv.confusion_frame(metrics, attr)
    counts = grid.to_numpy()
    totals = counts.sum(axis=1, keepdims=True)
    shares = counts / totals.clip(min=1)
    fig = go.Figure(
        go.Heatmap(
            z=shares.tolist(),
            x=list(grid.columns),
            y=list(grid.index),
            text=counts.tolist(),
            texttemplate="%{text}",
            customdata=counts.tolist(),
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar=dict(title="share of row", thickness=12, tickformat=".0%"),
            hovertemplate="true %{y}, predicted %{x}: %{customdata} (%{z:.0%} of %{y})"
            "<extra></extra>",
        )
    )
    fig.update_xaxes(side="top", title="predicted")
    fig.update_yaxes(autorange="reversed", title="true")
    return _tidy(fig, height=140 + 45 * ATTRIBUTES[attr].n_classes)


def per_class_chart(metrics: dict, attr: str) -> go.Figure:
    frame = rv.per_class_frame(metrics, attr)
    labels = [f"{c} (n={n})" for c, n in zip(frame["class"], frame["support"], strict=True)]
    fig = go.Figure(
        [
            go.Bar(
                x=labels,
                y=frame[measure].tolist(),
                name=measure,
                marker_color=colour,
                texttemplate="%{y:.2f}",
                hovertemplate=f"{measure} %{{y:.3f}}<extra></extra>",
            )
            for measure, colour in MEASURE_COLOURS.items()
        ]
    )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.05])
    return _tidy(fig, height=140 + 45 * ATTRIBUTES[attr].n_classes)


st.title("Compare")
choose_dataset()  # the shared sidebar; the leaderboard has its own data-set filter
deleted = st.session_state.pop("deleted_run", None)  # set just before the rerun that follows
if deleted:
    st.success(f"Deleted {deleted}.", icon=":material/delete:")
store = rv.run_store()
runs = store.list()
if not runs:
    st.info("No runs yet. Train a model: each finished run is compared here.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()
by_id = {r.id: r for r in runs}
board = leaderboard()
damaged = rv.damaged_runs(runs)
if damaged:
    st.warning(
        "**Some run folders are damaged**; what can be read of them is shown below, the rest "
        "is left out:\n\n"
        + "\n".join(f"- `{i}`: {'; '.join(problems)}" for i, problems in damaged.items()),
        icon=":material/warning:",
    )

# --- leaderboard -----------------------------------------------------------------------------------
st.header("Leaderboard")
failed = {r.id: r.status.get("error") for r in runs if r.state == "failed"}
if failed:
    st.caption(
        "Failed, so not on the leaderboard: "
        + "; ".join(f"`{i}` ({error or 'no reason given'})" for i, error in failed.items())
        + ". The Train page shows each one's log."
    )
if board.empty:
    st.info("No run has finished yet: the leaderboard fills in as runs end with test metrics.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
else:
    filters = st.columns(3)
    picks = {}
    for col, (column, label) in zip(
        filters, (("model", "Model"), ("attribute", "Attribute"), ("data", "Data set")), strict=True
    ):
        picks[column] = col.multiselect(
            label,
            sorted(board[column].dropna().unique()),
            key=f"filter_{column}",
            placeholder="all",
            format_func=TITLES.get if column == "attribute" else str,
        )
    shown = board
    for column, chosen in picks.items():
        if chosen:
            shown = shown[shown[column].isin(chosen)]
    shown = shown.sort_values(["attribute", "balanced_accuracy"], ascending=[True, False])
    st.dataframe(
        shown.assign(attribute=shown["attribute"].map(TITLES)),
        hide_index=True,
        key="leaderboard",
        column_config=BOARD_COLUMNS,
        column_order=BOARD_ORDER,
    )
    st.caption(
        f"{len(shown)} of {len(board)} rows, one per run and attribute, scored on each run's own "
        "test split. Click a column heading to sort. Balanced accuracy ranks runs: plain "
        "accuracy rewards always answering the largest class (the majority baseline). ECE and "
        "T are blank where a run predates calibration (not measured)."
    )

    # --- best run per attribute --------------------------------------------------------------------
    st.header("Best run per attribute")
    best = best_runs(board)
    rows = []
    for attr in (a for a in ATTRIBUTE_KEYS if a in best):
        row = board[(board["run"] == best[attr]) & (board["attribute"] == attr)].iloc[0]
        rows.append(
            {
                "attribute": ATTRIBUTES[attr].title,
                "run": row["run"],
                "model": row["model"],
                "balanced_accuracy": row["balanced_accuracy"],
                "accuracy": row["accuracy"],
                "majority_baseline": row["majority_baseline"],
            }
        )
    st.dataframe(rows, hide_index=True, key="best_runs", column_config=BOARD_COLUMNS)
    st.caption("Predict uses these runs by default, one per attribute.")

# --- learning curves -------------------------------------------------------------------------------
st.header("Learning curves")
histories = {r.id: r.history for r in runs}
with_history = [i for i, h in histories.items() if h]
if not with_history:
    st.caption("No run has finished an epoch yet.")
else:
    pick_runs, pick_key = st.columns([3, 1])
    chosen_runs = pick_runs.multiselect(
        "Runs", with_history, default=with_history[:CURVE_RUNS], key="curve_runs"
    )
    keys = rv.curve_keys([histories[i] for i in chosen_runs] or [histories[with_history[0]]])
    key = pick_key.selectbox("Metric", keys, key="curve_metric")
    if chosen_runs:
        st.plotly_chart(
            curves_chart({i: histories[i] for i in chosen_runs}, key), key="curves_overlay"
        )
    else:
        st.caption("Choose one or more runs.")

# --- one run in detail -----------------------------------------------------------------------------
st.header("Confusion matrix and per-class scores")
scored = [r.id for r in runs if rv.scored_attributes(r.metrics)]
if not scored:
    st.caption("No run has test metrics yet.")
else:
    pick_run, pick_attr = st.columns([3, 1])
    run_id = pick_run.selectbox("Run", scored, key="detail_run")
    metrics = by_id[run_id].metrics
    attrs = rv.scored_attributes(metrics)
    attr = pick_attr.selectbox(
        "Attribute", attrs, key="detail_attribute", format_func=lambda a: ATTRIBUTES[a].title
    )
    m = metrics["attributes"][attr]
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Confusion matrix")
        st.plotly_chart(confusion_chart(metrics, attr), key="confusion")
        st.caption(
            f"{m['n']} test pictures; rows are the true classes. Accuracy {m['accuracy']:.3f}, "
            f"balanced {m['balanced_accuracy']:.3f}, majority baseline "
            f"{m['majority_baseline']['accuracy']:.3f} (always '{m.get('majority_class', '?')}')."
        )
    with right:
        st.subheader("Precision and recall per class")
        st.plotly_chart(per_class_chart(metrics, attr), key="per_class")
        st.caption("Recall: the share of a class found; precision: the share of answers right.")

# --- calibration and robustness --------------------------------------------------------------------
st.header("Calibration and robustness")
if not scored:
    st.caption("No run has test metrics yet.")
else:
    quality_runs = st.multiselect(
        "Runs", scored, default=scored[:CURVE_RUNS], key="quality_runs", placeholder="none"
    )
    if not quality_runs:
        st.caption("Choose one or more runs.")
    else:
        chosen_metrics = {i: by_id[i].metrics for i in quality_runs}
        st.subheader("Calibration", help=ECE_HELP)
        calibration = rv.calibration_frame(chosen_metrics).set_index("attribute")
        st.table(
            calibration.rename(columns=CALIBRATION_HEADINGS).style.format(
                {"ECE before": "{:.3f}", "ECE after": "{:.3f}", "T": "{:.2f}"}, na_rep="–"
            ),
            hide_index=False,
        )
        st.caption(
            "ECE before and after temperature scaling, on each run's test split: lower is "
            "better. A temperature is fitted on the validation split when it has at least "
            f"{MIN_PICTURES} labelled pictures of that attribute."
        )

        st.subheader("Robustness", help=ROBUSTNESS_HELP)
        measured = [i for i in quality_runs if rv.robustness_measured(chosen_metrics[i])]
        if not measured:
            st.caption(
                "Not measured: "
                + ("this run predates" if len(quality_runs) == 1 else "these runs predate")
                + " the robustness evaluation. Runs trained since measure it."
            )
        else:
            for attr in ATTRIBUTE_KEYS:
                table, worse = rv.robustness_table(chosen_metrics, attr)
                if table.empty:
                    continue
                st.markdown(f"**{ATTRIBUTES[attr].title}**: balanced accuracy")
                table = table.rename(columns={"balanced_accuracy": "balanced accuracy"})
                st.table(flagged(table, worse), hide_index=False)
            st.caption(
                f"Shaded: a drop of more than {rv.DROP_FLAG:.2f} from the clean score. "
                + "; ".join(f"`{i}`: {rv.robustness_note(chosen_metrics[i])}" for i in quality_runs)
                + "."
            )

# --- faithfulness of the heat maps ----------------------------------------------------------------
st.header("Heat-map faithfulness", help=FAITHFULNESS_HELP)
if not scored:
    st.caption("No run has test metrics yet.")
else:
    pick_runs, pick_head = st.columns([3, 1])
    faithfulness_runs = pick_runs.multiselect(
        "Runs", scored, default=scored[:CURVE_RUNS], key="faithfulness_runs", placeholder="none"
    )
    head = pick_head.selectbox(
        "Attribute",
        ["mean", *ATTRIBUTE_KEYS],
        key="faithfulness_attribute",
        format_func=lambda a: "all (mean)" if a == "mean" else ATTRIBUTES[a].title,
    )
    if not faithfulness_runs:
        st.caption("Choose one or more runs.")
    else:
        faithfulness_metrics = {i: by_id[i].metrics for i in faithfulness_runs}
        models = {} if board.empty else dict(zip(board["run"], board["model"]))
        faithful = faithfulness_table(
            faithfulness_metrics, models, None if head == "mean" else head
        )
        if not faithful.empty:
            best_rows = faithful["most faithful"].to_numpy()
            st.dataframe(
                faithful.style.apply(
                    lambda row: [BEST_STYLE if best_rows[row.name] else ""] * len(row), axis=1
                ),
                hide_index=True,
                key="faithfulness",
                column_config=FAITHFULNESS_COLUMNS,
            )
            st.caption(
                "Per model and explanation method, on each run's test split, each head "
                "following its own predicted label: shaded, the most faithful method (the "
                f"highest gain over random, averaged over the heads). '{RANDOM}': maps of "
                "random blobs, chance; a method near it says little about this model."
            )
        missing = [
            i for i in faithfulness_runs if not faithfulness_measured(faithfulness_metrics[i])
        ]
        if missing:
            st.caption(
                "; ".join(f"`{i}`: not measured" for i in missing)
                + " (trained before faithfulness was measured; `python -m portrait_core "
                "evaluate RUN_ID` measures it)."
            )
        elif faithful.empty:
            st.caption("Nothing was measured for this attribute in these runs.")

# --- tuning sweeps --------------------------------------------------------------------------------
st.header("Sweeps", help="A sweep trains many runs of one model, its settings chosen by Optuna.")
sweep_panels.sweep_comparison()  # the best trial, parallel coordinates, importances

# --- delete ----------------------------------------------------------------------------------------
st.header("Delete a run")
pick, button = st.columns([3, 1], vertical_alignment="bottom")
target = pick.selectbox(
    "Run to delete",
    list(by_id),
    key="delete_run",
    format_func=lambda i: f"{i} ({by_id[i].state})",
)
if button.button("Delete…", key="delete", icon=":material/delete:"):
    st.session_state["delete_pending"] = target
if st.session_state.get("delete_pending") == target:
    st.warning(f"Delete **{target}** for good: its model, curves and metrics?")
    yes, no, _ = st.columns([1, 1, 4])
    if yes.button("Yes, delete it", key="delete_confirm", type="primary"):
        st.session_state.pop("delete_pending")
        try:
            store.delete(target)
        except ValueError as exc:
            st.error(f"**Not deleted:** {exc}. Stop it on the Train page, then delete it.")
        except (FileNotFoundError, OSError) as exc:
            st.error(f"**Not deleted:** {exc}. Reload the page to see the runs as they are now.")
        else:
            st.session_state["deleted_run"] = target
            st.rerun()
    if no.button("Cancel", key="delete_cancel"):
        st.session_state.pop("delete_pending")
        st.rerun()
