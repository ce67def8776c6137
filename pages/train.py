"""Train: choose a model and its settings, start a run in its own process, watch it live; or
start a sweep of runs whose settings Optuna chooses (the Sweep tab, pages/sweep_panels.py).

The run is a separate `python -m portrait_core train` process writing a run folder; this page
only reads that folder (in a fragment that refreshes itself), so a reload, a closed tab or a
second tab never blocks or stops it, and runs started from the command line show up the same way.
TensorFlow is never imported here: the form's presets come from portrait_core.run_view.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from pages import sweep_panels
from pages.common import METRIC_COLUMNS, RESOLVED_KEY, choose_dataset
from portrait_core import run_view as rv
from portrait_core.models.catalog import TRAIN_DEFAULT
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES
from portrait_core.sweeps.sweep import trial_tag
from portrait_core.training.launch import launch_resume, launch_training
from portrait_core.training.runs import FINAL_STATES, PROCESS_DIED, Run

LIVE_EVERY_S = 1.5  # the selected run's view refreshes this often (the issue asks for <= 2 s)
WATCH_EVERY_S = 3.0  # new runs (another tab, the CLI) and state changes appear this fast
HEAD_COLOURS = {"gender": "#3366CC", "age": "#F29E4C", "face_shape": "#4DAF7C"}
HEAD_COLOURS |= {"hairstyle": "#B55D9E", rv.TOTAL: "#555555"}
STATE_BADGES = {  # state -> (material icon, badge colour)
    "queued": (":material/hourglass_top:", "gray"),
    "running": (":material/play_arrow:", "blue"),
    "completed": (":material/check_circle:", "green"),
    "cancelled": (":material/stop_circle:", "orange"),
    "failed": (":material/error:", "red"),
    "pruned": (":material/content_cut:", "violet"),  # a sweep's trial, stopped by its pruner
}
NO_BALANCE = "none"
WEIGHTS = ("imagenet", "none")
# form field -> widget key; a preset fills these (run_view.form_defaults)
FIELD_KEYS = {
    "image_size": "train_image_size",
    "epochs": "train_epochs",
    "batch_size": "train_batch_size",
    "lr": "train_lr",
    "early_stop_patience": "train_early_stop",
    "seed": "train_seed",
    "augment": "train_augment",
    "class_weights": "train_class_weights",
    "ordinal_spread": "train_ordinal_spread",
    "age_spread": "train_age_spread",
    "degrade_share": "train_degrade_share",
    "weights": "train_weights",
    "unfreeze": "train_unfreeze",
}
KEEP = "session"  # form values survive a visit to another page


def _on_preset_change() -> None:
    """A new model or preset: put that preset's settings into the form."""
    model, preset = st.session_state["train_model"], st.session_state["train_preset"]
    for field, value in rv.preset_values(model, preset, catalog).items():
        if field in FIELD_KEYS:
            st.session_state[FIELD_KEYS[field]] = value


def _fill_missing() -> None:
    """Fields not set yet (first visit, a model's own fields) start at the model's preset."""
    if st.session_state.get("train_model") not in catalog:  # first visit, or a model renamed
        st.session_state["train_model"] = (
            TRAIN_DEFAULT if TRAIN_DEFAULT in catalog else model_names[0]
        )
    st.session_state.setdefault("train_preset", "default")
    st.session_state.setdefault("train_attributes", list(ATTRIBUTE_KEYS))
    values = rv.form_defaults(
        st.session_state["train_model"], st.session_state["train_preset"], catalog
    )
    for field, key in FIELD_KEYS.items():
        if field in values and key not in st.session_state:
            st.session_state[key] = values[field]


st.title("Train")
dataset = choose_dataset()
data_path = st.session_state.get(RESOLVED_KEY)  # the path as typed/resolved, for load_dataset
can_start = bool(data_path) and dataset is not None and len(dataset) > 0
try:
    catalog = rv.model_catalog()
except (OSError, SyntaxError, ValueError) as exc:
    st.error(
        f"**The model registry could not be read:** {exc}.\n\n"
        "Fix the files in portrait_core/models (or undo the last change there), then reload."
    )
    st.stop()
model_names = list(catalog)
_fill_missing()


# --- the form ------------------------------------------------------------------------------------
def settings_form() -> dict:
    """Draw the run settings; return them as make_config keywords (model and preset included)."""
    top = st.columns([2, 2, 4])
    model = top[0].selectbox(
        "Model",
        model_names,
        key="train_model",
        on_change=_on_preset_change,
        persist_state=KEEP,
        help="\n\n".join(f"**{name}**: {info.description}" for name, info in catalog.items()),
    )
    preset = top[1].radio(
        "Preset",
        rv.PRESETS,
        key="train_preset",
        horizontal=True,
        on_change=_on_preset_change,
        persist_state=KEEP,
        help="**default**: settings tuned for a CPU. **study**: the 2022 study's "
        "hyper-parameters for this model. Choosing one fills the fields below.",
    )
    attributes = top[2].multiselect(
        "Attributes (one model, one head each)",
        ATTRIBUTE_KEYS,
        key="train_attributes",
        format_func=lambda a: ATTRIBUTES[a].title,
        persist_state=KEEP,
        placeholder="Choose one or several",
    )
    st.caption(f"**{model}**: {catalog[model].description}")

    row = st.columns(4)
    image_size = row[0].number_input(
        "Image size (px)",
        min_value=32,
        max_value=512,
        step=16,
        key="train_image_size",
        persist_state=KEEP,
        help="Pictures are letterboxed to a square this big. The study used 224; 128 trains "
        "about 3x faster on a CPU.",
    )
    epochs = row[1].number_input(
        "Epochs", min_value=1, max_value=500, step=1, key="train_epochs", persist_state=KEEP
    )
    batch_size = row[2].number_input(
        "Batch size",
        min_value=1,
        max_value=1024,
        step=1,
        key="train_batch_size",
        persist_state=KEEP,
    )
    lr = row[3].number_input(
        "Learning rate",
        min_value=1e-6,
        max_value=0.5,
        step=1e-4,
        format="%.5f",
        key="train_lr",
        persist_state=KEEP,
        help="Adam's learning rate; ReduceLROnPlateau lowers it when val_loss stalls.",
    )

    options = {}
    if model == "resnet50":
        row = st.columns(4)
        options["weights"] = row[0].radio(
            "Starting weights",
            WEIGHTS,
            key="train_weights",
            horizontal=True,
            persist_state=KEEP,
            help="ImageNet weights are downloaded once into ~/.keras/models; without a network, "
            "put the file there or choose none (the run says so plainly if they are missing).",
        )
        options["unfreeze"] = row[1].number_input(
            "Unfreeze depth (layers)",
            min_value=0,
            max_value=175,
            step=1,
            key="train_unfreeze",
            persist_state=KEEP,
            help="How many of ResNet50's last layers train; the rest keep their ImageNet "
            "weights. The study: 10 (its '-20' variant: 20). Ignored with random weights.",
        )

    row = st.columns(4)
    balance_by = row[0].selectbox(
        "Balance by",
        (NO_BALANCE, *attributes),
        key="train_balance",
        format_func=lambda a: "no balancing" if a == NO_BALANCE else ATTRIBUTES[a].title,
        help="Oversample this attribute's small classes in the training split "
        "(the Dataset page shows the counts before and after).",
    )
    target = row[1].number_input(
        "Pictures per class (0 = largest class)",
        min_value=0,
        step=50,
        key="train_balance_target",
        disabled=balance_by == NO_BALANCE,
    )

    with st.expander("Advanced"):
        row = st.columns(5, vertical_alignment="bottom")
        seed = row[0].number_input(
            "Seed", min_value=0, step=1, key="train_seed", persist_state=KEEP
        )
        max_steps = row[1].number_input(
            "Max steps per epoch",
            min_value=0,
            step=1,
            key="train_max_steps",
            persist_state=KEEP,
            help="Caps the batches per epoch, for a quick trial of the settings; "
            "0 = the whole training split.",
        )
        patience = row[2].number_input(
            "Early-stop patience",
            min_value=1,
            step=1,
            key="train_early_stop",
            persist_state=KEEP,
            help="Epochs without a better val_loss before training stops.",
        )
        augment = row[3].toggle("Augmentation", key="train_augment", persist_state=KEEP)
        class_weights = row[4].toggle(
            "Class weights", key="train_class_weights", persist_state=KEEP
        )
        minutes = st.number_input(
            "Time budget (minutes)",
            min_value=0.0,
            step=1.0,
            key="train_max_minutes",
            persist_state=KEEP,
            help="Training stops before an epoch that would end past it, and the cosine "
            "schedule ends at the last epoch that fits rather than at Epochs (set Epochs "
            "high). 0 = no budget.",
        )
        ordinal_spread = st.number_input(
            "Age bands as ordered classes (spread, in bands)",
            min_value=0.0,
            max_value=5.0,
            step=0.1,
            key="train_ordinal_spread",
            persist_state=KEEP,
            help="Teaches the age bands as ordered: calling a 29-year-old 30s costs less than "
            "calling them 60+ (soft targets over the neighbouring bands). 0.6 raised age "
            "balanced accuracy on real faces by about 0.02, but made the model less robust to "
            "blurry, down-scaled photos (README, Real faces). 0 = the band alone.",
        )
        age_spread = st.number_input(
            "Age bands from exact ages (spread, in years)",
            min_value=0.0,
            max_value=20.0,
            step=0.5,
            key="train_age_spread",
            persist_state=KEEP,
            help="Where the data gives each person's age in years (UTKFace, AI Hub, a "
            "manifest's numbers), a 29-year-old is taught as partly 30s and a 25-year-old as "
            "20s: a Gaussian this many years wide, spread over the bands it overlaps (README, "
            "Real faces). Use this or the spread above, not both. 0 = the band alone.",
        )
        photo = rv.preset_values(model, preset, catalog).get("augmentation") == "photo"
        degradable = photo and augment  # the share sets the photo augmentation's losses
        degrade_share = st.number_input(
            "Degraded pictures (share)",
            min_value=0.0,
            max_value=1.0,
            step=0.05,
            key="train_degrade_share",
            persist_state=KEEP,
            disabled=not degradable,
            placeholder="the recipe's own",
            help="The photo augmentation (the default preset's) blurs some training pictures, "
            "shows some at a lower resolution and JPEG-compresses some, each rolled apart. "
            "This sets the share for all three (the recipe's own: 0.25, 0.3, 0.3): more makes "
            "a model steadier on poor photos, at some cost on sharp ones (README, Real "
            "faces). Empty = the recipe's own.",
        )
        faces = st.toggle(
            "Find faces first",
            key="train_faces",
            persist_state=KEEP,
            help="For photos where the person is small in the frame: each picture is cut down "
            "to its largest face, with the head and hair, before training (the crops are made "
            "once and kept beside the data). Pictures without a face are left out and counted.",
        )

    balance = None
    if balance_by != NO_BALANCE:
        balance = f"{balance_by}:{int(target)}" if target else balance_by
    return {
        "model": model,
        "preset": preset,
        "attributes": tuple(attributes),
        "image_size": int(image_size),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "early_stop_patience": int(patience),
        "seed": int(seed),
        "augment": bool(augment),
        "class_weights": bool(class_weights),
        "ordinal_spread": float(ordinal_spread),
        "age_spread": float(age_spread),
        "degrade_share": (
            float(degrade_share) if degradable and degrade_share is not None else None
        ),
        "faces": bool(faces),
        "max_steps_per_epoch": int(max_steps) or None,
        "max_minutes": float(minutes) or None,
        "balance": balance,
        "options": options,
    }


def start(settings: dict) -> None:
    try:
        config = rv.train_config(data_path, out=str(rv.runs_root()), **settings)
    except ValueError as exc:
        st.error(f"**These settings cannot train:** {exc}.\n\nChange them and press Start again.")
        return
    try:
        run = launch_training(config)
    except OSError as exc:
        st.error(
            f"**The run could not be started:** {exc}.\n\n"
            f"Check that `{rv.runs_root()}` can be written to, then press Start again."
        )
        return
    st.session_state["run_select"] = run.id
    st.toast(f"Started {run.id}", icon=":material/play_arrow:")


run_tab, sweep_tab = st.tabs(["Run", "Sweep"])
with run_tab, st.container(border=True):
    st.subheader("New run")
    settings = settings_form()
    left, right = st.columns([1, 5], vertical_alignment="center")
    clicked = left.button(
        "Start", key="start", type="primary", icon=":material/play_arrow:", disabled=not can_start
    )
    if can_start:
        right.caption(
            f"Trains on `{data_path}` ({len(dataset):,} pictures, the data set chosen in the "
            f"sidebar) into `{rv.runs_root()}`. The run goes on if you close this tab."
        )
        try:  # settings that cannot train get no estimate; Start says why
            planned = rv.train_config(data_path, out=str(rv.runs_root()), **settings)
        except ValueError:
            planned = None
        if planned is not None:
            estimate = rv.duration_estimate(planned, len(dataset), rv.run_store().list())
            st.caption(rv.describe_estimate(estimate, planned))
    else:
        right.caption("Choose a data set with pictures in the sidebar to start a run.")
    if clicked:
        start(settings)
with sweep_tab:  # many runs of one model, their settings chosen by Optuna (pages/sweep_panels.py)
    sweep_panels.sweep_tab(data_path, len(dataset) if can_start else 0)


# --- the runs --------------------------------------------------------------------------------------
def curves_chart(run: Run) -> go.Figure | None:
    """Loss and accuracy per head, train (solid) and validation (dashed), one point per epoch."""
    attributes = rv.run_attributes(run)
    frame = rv.curves_frame(run.history, attributes or None)
    if frame.empty:
        return None
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.08
    )
    heads = [h for h in ATTRIBUTE_KEYS if h in set(frame["head"])]  # the summed loss would
    heads = heads or [rv.TOTAL]  # dwarf the heads' own: shown only when there is nothing else
    for col, metric in enumerate(("loss", "accuracy"), start=1):
        for head in heads:
            for split in ("train", "val"):
                part = frame[(frame["head"] == head) & (frame["metric"] == metric)]
                part = part[part["split"] == split]
                if part.empty:
                    continue
                title = ATTRIBUTES[head].title if head in ATTRIBUTES else "all heads"
                fig.add_trace(
                    go.Scatter(
                        x=part["epoch"].tolist(),
                        y=part["value"].tolist(),
                        mode="lines+markers",
                        name=f"{title} · {split}",
                        legendgroup=f"{head}-{split}",
                        showlegend=col == 1,
                        line=dict(
                            color=HEAD_COLOURS[head], dash="dash" if split == "val" else "solid"
                        ),
                        marker=dict(size=6, symbol="circle-open" if split == "val" else "circle"),
                        hovertemplate=f"{title} {split} {metric}: %{{y:.3f}}<extra>epoch %{{x}}</extra>",
                    ),
                    row=1,
                    col=col,
                )
    fig.update_xaxes(title="epoch", dtick=1 if frame["epoch"].max() <= 20 else None)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_layout(
        height=360,
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0.0),
        hovermode="x unified",
    )
    return fig


def metrics_section(run: Run) -> None:
    metrics = run.metrics
    table = rv.metrics_table(metrics)
    if table.empty:
        st.caption("No test metrics were written for this run.")
        return
    st.markdown("**Test metrics** (best model by val_loss, on the held-out test split)")
    st.dataframe(table, hide_index=True, key=f"metrics_{run.id}", column_config=METRIC_COLUMNS)
    facts = []
    if metrics.get("best_epoch"):
        facts.append(f"best epoch {metrics['best_epoch']} of {metrics.get('epochs_run', '?')}")
    if metrics.get("train_seconds") is not None:
        facts.append(f"trained in {rv.format_duration(metrics['train_seconds'])}")
    if metrics.get("ms_per_image") is not None:
        facts.append(f"{metrics['ms_per_image']:.1f} ms per picture")
    if facts:
        st.caption(" · ".join(facts).capitalize() + ". Compare runs side by side on Compare.")


def run_details(run: Run) -> None:
    """The selected run: state, progress, time, Stop, curves; its metrics or error once over."""
    status, history = run.status, run.history  # a process that died reads as failed here
    state = run.state
    status["state"] = state  # one reading: the process may end between the two
    p = rv.progress(status, history)
    request = rv.run_request(run)
    active = state in ("queued", "running")

    icon, colour = STATE_BADGES.get(state, (":material/help:", "gray"))
    st.badge(state, icon=icon, color=colour)
    problems = run.problems
    if problems:
        st.warning(
            "**Something is wrong with this run's folder** (the rest is shown as far as it can "
            "be read):\n\n" + "\n".join(f"- {p}" for p in problems),
            icon=":material/warning:",
        )
    cols = st.columns(4)
    cols[0].metric("Epoch", f"{p['epoch']} / {p['epochs'] or request.get('epochs', '?')}")
    cols[1].metric("Elapsed", rv.format_duration(p["elapsed_s"]))
    if active:
        cols[2].metric(
            "Time left",
            rv.format_duration(p["eta_s"]) if p["eta_s"] is not None else "after epoch 1",
            help="From the last epochs' durations; early stopping may end the run sooner.",
        )
    if state == "queued":
        st.progress(0.0, text="Starting the training process (it loads TensorFlow: 10–30 s)…")
    elif state == "running" and p["evaluating"]:
        st.progress(1.0, text="Training done: scoring the best model on the test split…")
    elif state == "running":
        st.progress(
            p["fraction"],
            text=f"Epoch {p['epoch']}/{p['epochs']}: batch {p['batch']}/{p['steps'] or '?'}",
        )
    if active:
        if run.stop_requested:
            st.info(
                "Stop requested: the run stops after its current batch, then scores its best model."
            )
        elif st.button("Stop", key="stop", icon=":material/stop:"):
            run.request_stop()
            st.info(
                "Stop requested: the run stops after its current batch, then scores its best model."
            )

    fig = curves_chart(run)
    if fig is not None:
        st.plotly_chart(fig, key="curves")
        st.caption("Solid: training split; dashed: validation split. One point per epoch.")
    elif state not in FINAL_STATES or state == "running":
        st.caption("The learning curves appear when the first epoch ends.")

    if state == "failed":
        error = str(status.get("error") or "the training process ended without saying why")
        if error == PROCESS_DIED:
            advice = (
                "It was killed (by hand, or for want of memory), or the machine restarted, "
                "before it could say why. The end of its log may tell more; start a new run."
            )
        else:
            advice = "Fix what the message names (settings, data set, weights) and start a new run."
        st.error(f"**This run failed:** {error.rstrip('.')}.\n\n{advice}")
        best = rv.best_epoch(history)
        if run.model_file.exists() and best:
            st.caption(f"Its best model so far (epoch {best}) was kept: Predict can use it.")
        tail = rv.log_tail(run)
        if tail:
            with st.expander("The end of the run's log"):
                st.code(tail, language=None)
    elif state == "cancelled":
        st.warning("This run was stopped before its last epoch.")
    if state in ("failed", "cancelled"):
        resume_button(run)
    if state == "cancelled":
        metrics_section(run)
    elif state == "completed":
        metrics_section(run)
    elif state == "pruned":
        tag = trial_tag(run)
        st.info(
            f"Trial {tag.get('trial', '?')} of sweep **{tag.get('sweep', '?')}**, pruned after "
            f"epoch {status.get('pruned_after_epoch', '?')}: its validation loss was behind the "
            "sweep's other trials at that epoch, so it stopped early, unscored on the test split."
        )


def resume_button(run: Run) -> None:
    """Resume a failed or cancelled run from its last backed-up epoch (`train --resume`)."""
    problem = run.resume_problem
    if problem:
        st.caption(f"It cannot be resumed: {problem.split(': ', 1)[-1]}.")
        return
    epoch = run.backed_up_epoch
    if st.button(
        f"Resume from epoch {epoch}",
        key="resume",
        icon=":material/resume:",
        help="Continue in the same run folder from the last finished epoch: weights, optimizer, "
        "learning-rate schedule and early-stopping state as they were.",
    ):
        try:
            launch_resume(run)
        except (ValueError, OSError) as exc:
            st.error(f"**The run could not be resumed:** {exc}.")
            return
        st.toast(f"Resuming {run.id} from epoch {epoch}", icon=":material/resume:")
        st.rerun()
    shown = max((int(r.get("epoch", 0)) for r in run.history), default=0)
    if shown > epoch:
        st.caption(
            f"Epoch {shown} was cut short when the run stopped, so it was not backed up: "
            "resuming runs it again in full."
        )


@st.fragment(run_every=LIVE_EVERY_S)
def live_details(run_id: str) -> None:
    """The selected run while it goes on; a full rerun once it is over (or deleted)."""
    try:
        run = rv.run_store().get(run_id)
    except FileNotFoundError:  # deleted meanwhile (Compare, another tab)
        run = None
    if run is None or run.state in FINAL_STATES:
        st.rerun()  # the whole page: its run list follows
    run_details(run)


@st.fragment(run_every=WATCH_EVERY_S)
def watch_runs(seen: tuple) -> None:
    """Rerun the page when a run appears, disappears or changes state (CLI, another tab)."""
    if _fingerprint(rv.run_store().list()) != seen:
        st.rerun()


def _fingerprint(runs: list[Run]) -> tuple:
    return tuple((r.id, r.state) for r in runs)


st.header("Runs")
runs = rv.run_store().list()
watch_runs(_fingerprint(runs))
if not runs:
    st.info(
        "No runs yet. Start one above, or from a terminal "
        "(`python -m portrait_core train --data data/synthetic --epochs 5`): it appears here too."
    )
    st.stop()

ids = [r.id for r in runs]
by_id = dict(zip(ids, runs, strict=True))
states = {r.id: r.state for r in runs}
if st.session_state.get("run_select") not in ids:
    st.session_state["run_select"] = ids[0]
frame = rv.runs_frame(runs)
if not frame["problems"].any():
    frame = frame.drop(columns="problems")
st.dataframe(
    frame,
    hide_index=True,
    key="runs_table",
    height=min(38 + 35 * len(runs), 260),
    column_config={
        "run": st.column_config.TextColumn("run", width="large"),
        "started": st.column_config.DatetimeColumn(format="D MMM, HH:mm:ss"),
        "problems": st.column_config.TextColumn("problems", width="large"),
    },
)
pick, about = st.columns([2, 3], vertical_alignment="bottom")
chosen = pick.selectbox(
    "Show run",
    ids,
    key="run_select",
    format_func=lambda i: f"{i} · {states[i]}",
)
request = rv.run_request(by_id[chosen])
if request:
    about.caption(
        f"{request.get('model')} ({request.get('preset')} preset) · "
        f"{', '.join(ATTRIBUTES[a].title if a in ATTRIBUTES else a for a in request.get('attributes') or [])} · "
        f"{request.get('image_size')} px · batch {request.get('batch_size')} · "
        f"lr {request.get('lr')} · data `{request.get('data')}`"
    )
with st.container(border=True):
    if states[chosen] in ("queued", "running"):
        live_details(chosen)
    else:
        run_details(by_id[chosen])
