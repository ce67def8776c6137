"""Dataset page: class counts by split, imbalance, cross-tabs, missing labels, balancing."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from pages.common import RESOLVED_KEY, need_dataset, split_sizes_cached, stats_cached
from portrait_core import app_support as support
from portrait_core.data.split import SPLITS
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES

SPLIT_COLOURS = {"train": "#3366CC", "val": "#F29E4C", "test": "#4DAF7C"}
BALANCE_COLOURS = {"before": "#9AA5B1", "after": "#3366CC"}
CHART_HEIGHT = 300
SAMPLE_COUNT = 12
SAMPLE_COLUMNS = 6
ANY = "any"

thumbnail_cached = st.cache_data(support.thumbnail, max_entries=512, show_spinner=False)


def _tidy(fig: go.Figure, height: int = CHART_HEIGHT, y_title: str = "pictures") -> go.Figure:
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=30, b=10),
        # top left: plotly's tool bar appears top right on hover and would cover it
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0.0),
        yaxis_title=y_title,
        hovermode="x unified",
    )
    return fig


# graph_objects rather than plotly.express: px spends ~0.1 s per chart sorting out its
# arguments, which on this page (five charts per rerun) is most of the script's run time.
def class_count_chart(attr: str, stats: dict) -> go.Figure:
    frame = support.split_counts(stats, attr)
    fig = go.Figure(
        [
            go.Bar(
                x=part["class"].tolist(),
                y=part["count"].tolist(),
                name=split,
                marker_color=SPLIT_COLOURS[split],
                hovertemplate="%{y:,}",
            )
            for split, part in frame.groupby("split", sort=False)
        ]
    )
    fig.update_layout(barmode="group")
    return _tidy(fig)


def crosstab_chart(a: str, b: str, table) -> go.Figure:
    grid = support.crosstab(table, a, b)
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=list(grid.columns),
            y=list(grid.index),
            colorscale="Blues",
            texttemplate="%{z:,}",
            colorbar=dict(title="pictures", thickness=12),
            hovertemplate=f"{ATTRIBUTES[a].title} %{{y}}, {ATTRIBUTES[b].title} %{{x}}: "
            "%{z:,}<extra></extra>",
        )
    )
    fig.update_xaxes(side="top", title=ATTRIBUTES[b].title)
    fig.update_yaxes(autorange="reversed", title=ATTRIBUTES[a].title)  # first class on top
    fig = _tidy(fig, height=110 + 48 * ATTRIBUTES[a].n_classes, y_title=ATTRIBUTES[a].title)
    fig.update_layout(hovermode="closest")
    return fig


def balance_chart(counts: dict[str, int], target: int) -> go.Figure:
    frame = support.balance_frame(counts, target)
    fig = go.Figure(
        [
            go.Bar(
                x=part["class"].tolist(),
                y=part["count"].tolist(),
                name=when,
                marker_color=BALANCE_COLOURS[when],
                text=part["count"].tolist(),
                texttemplate="%{y:,}",
                hovertemplate="%{y:,}",
            )
            for when, part in frame.groupby("when", sort=False)
        ]
    )
    fig.add_hline(
        y=target, line_dash="dot", line_color="#888", annotation_text=f"target {target:,}"
    )
    fig.update_layout(barmode="group")
    return _tidy(fig, y_title="pictures per epoch")


st.title("Dataset")
dataset = need_dataset()
root = st.session_state[RESOLVED_KEY]
version = support.data_version(root)
stats = stats_cached(root, version)
sizes = split_sizes_cached(root, version)
table = dataset.table

# --- headline numbers -------------------------------------------------------------------------
cols = st.columns(5)
cols[0].metric("Pictures", f"{len(table):,}")
cols[1].metric("Format", dataset.format)
for col, split in zip(cols[2:], SPLITS, strict=True):
    share = sizes[split] / len(table)
    col.metric(
        f"{split.capitalize()} split",
        f"{sizes[split]:,}",
        f"{share:.0%} of the pictures",
        delta_color="off",
        delta_arrow="off",
    )

# --- class counts per attribute, by split --------------------------------------------------------
st.header("Class counts by split")
st.caption(
    "A seeded split, stratified on every label, saved beside the data: training uses the same one. "
    f"Classes under {support.MINORITY_SHARE:.0%} of the labelled pictures are flagged."
)
grid = st.columns(2)
for i, attr in enumerate(ATTRIBUTE_KEYS):
    with grid[i % 2], st.container(border=True):
        counts = stats["counts"][attr]
        top, share = support.majority_share(counts)
        st.subheader(ATTRIBUTES[attr].title)
        st.plotly_chart(class_count_chart(attr, stats), key=f"counts_{attr}")
        labelled = sum(counts.values())
        if top is None:
            st.caption("No picture has this label.")
        else:
            st.caption(
                f"Majority class **{top}**: {share:.1%} of {labelled:,} labelled pictures, so "
                f"always answering *{top}* scores {share:.3f}. "
                f"Missing: {stats['missing'][attr]:,}."
            )
        for message in support.minority_warnings(counts):
            st.warning(message, icon="⚠️")

# --- cross-tab and missing labels --------------------------------------------------------------
left, right = st.columns([3, 2], gap="large")
with left:
    st.header("Cross-tab")
    pick_a, pick_b = st.columns(2)
    titles = {k: ATTRIBUTES[k].title for k in ATTRIBUTE_KEYS}
    a = pick_a.selectbox("Rows", ATTRIBUTE_KEYS, index=0, format_func=titles.get, key="xtab_rows")
    b = pick_b.selectbox(
        "Columns", ATTRIBUTE_KEYS, index=1, format_func=titles.get, key="xtab_cols"
    )
    st.plotly_chart(crosstab_chart(a, b, table), key="xtab_chart")
    st.caption("Pictures labelled with both attributes; a missing label leaves a picture out.")
with right:
    st.header("Missing labels")
    st.dataframe(
        support.missing_labels(table),
        hide_index=True,
        key="missing_table",
        column_config={
            "labelled": st.column_config.NumberColumn(format="localized"),
            "missing": st.column_config.NumberColumn(format="localized"),
            "missing share": st.column_config.ProgressColumn(
                min_value=0.0, max_value=1.0, format="percent"
            ),
        },
    )
    st.caption(
        "A missing label keeps the picture: it trains the other heads and is masked out of the "
        "loss for this one."
    )
    if dataset.report.n_blank:
        st.caption(
            f"{dataset.report.n_blank:,} of the missing labels were given but unusable (an "
            "unknown value, an age out of range, an empty field): *Labels left blank* in the "
            "sidebar lists them by reason."
        )

# --- balancing ------------------------------------------------------------------------------------
st.header("Balancing")
st.caption(
    "Oversampling repeats the training pictures of small classes of one attribute until each class "
    "reaches a target count per epoch. Validation and test stay as they are."
)
if st.toggle("Show the effect of balancing", key="balance_on"):
    pick_attr, pick_target = st.columns(2)
    attr = pick_attr.selectbox(
        "Balance by",
        ATTRIBUTE_KEYS,
        index=ATTRIBUTE_KEYS.index("hairstyle"),
        format_func=titles.get,
        key="balance_attr",
    )
    train_counts = stats["splits"]["train"][attr]
    largest = max(train_counts.values()) or 1
    target = pick_target.number_input(
        "Target pictures per class (train split)",
        min_value=1,
        value=largest,
        step=max(1, largest // 20),
        key=f"balance_target_{attr}",
        help="The largest class's count evens every class out; a smaller target repeats less.",
    )
    summary = support.balance_summary(train_counts, int(target))
    chart, facts = st.columns([3, 1], gap="large")
    chart.plotly_chart(balance_chart(train_counts, int(target)), key="balance_chart")
    facts.metric(
        "Labelled pictures per epoch",
        f"{summary.after:,}",
        f"{summary.after - summary.before:+,} repeats",
        delta_color="off",
    )
    if summary.most_repeated:
        facts.metric(f"'{summary.most_repeated}' repeated", f"{summary.repeat:.1f}×")
    facts.caption(
        "A class repeated many times is easy to memorise; augmentation varies the repeats, "
        "and class weights are switched off for the balanced attribute."
    )

# --- sample pictures ------------------------------------------------------------------------------
st.header("Sample pictures")
filter_cols = st.columns(len(ATTRIBUTE_KEYS) + 1, vertical_alignment="bottom")
filters = {}
for col, attr in zip(filter_cols, ATTRIBUTE_KEYS, strict=False):
    choice = col.selectbox(
        ATTRIBUTES[attr].title, (ANY, *ATTRIBUTES[attr].classes), key=f"sample_{attr}"
    )
    filters[attr] = None if choice == ANY else choice
if filter_cols[-1].button("Other pictures", key="sample_shuffle", width="stretch"):
    st.session_state["sample_seed"] = st.session_state.get("sample_seed", 0) + 1
rows = support.sample_rows(
    table, filters, SAMPLE_COUNT, seed=st.session_state.get("sample_seed", 0)
)
if rows.empty:
    st.info("No picture has all of these labels. Set a filter back to 'any'.")
else:
    st.caption(f"{len(rows)} pictures; labels read {' · '.join(ATTRIBUTE_KEYS)}.")
    records = rows.to_dict("records")
    for start in range(0, len(records), SAMPLE_COLUMNS):  # one st.columns per row keeps rows level
        for col, row in zip(st.columns(SAMPLE_COLUMNS), records[start : start + SAMPLE_COLUMNS]):
            thumb = thumbnail_cached(row["path"])
            if thumb is None:
                col.caption(f"unreadable: {row['path']}")
            else:
                col.image(thumb, caption=support.label_line(row), width="stretch")
