"""The sweep parts of two pages: Train's *Sweep* tab (start a sweep, watch its trials) and
Compare's sweep view (the best trial, the trials in parallel coordinates, the importances).

Layout only: what is shown comes from portrait_core.sweeps (Optuna's SQLite storage and the
trials' run folders). No TensorFlow here: a sweep runs in its own process (sweeps/launch.py).
"""

from __future__ import annotations

from datetime import datetime

import plotly.graph_objects as go
import streamlit as st

from portrait_core import run_view as rv
from portrait_core.models.catalog import TRAIN_DEFAULT
from portrait_core.schema import ATTRIBUTE_KEYS, ATTRIBUTES
from portrait_core.sweeps import launch
from portrait_core.sweeps.space import default_space, parameter_names, parse_space_text, space_text
from portrait_core.sweeps.sweep import (
    OBJECTIVE,
    NotEnoughTrials,
    Sweep,
    SweepSpec,
    SweepStore,
    best_trial,
    parallel_coordinates,
    param_importances,
    trials_frame,
)

WATCH_EVERY_S = 3.0  # a running sweep's trials table refreshes this often
KEEP = "session"  # form values survive a visit to another page, as the Run form's do
SWEEP_BADGES = {  # state -> (material icon, badge colour)
    "queued": (":material/hourglass_top:", "gray"),
    "running": (":material/play_arrow:", "blue"),
    "completed": (":material/check_circle:", "green"),
    "stopped": (":material/stop_circle:", "orange"),
    "interrupted": (":material/pause_circle:", "orange"),
    "failed": (":material/error:", "red"),
}
SWEEP_ADVICE = {
    "interrupted": "Its process was killed before the sweep finished. Start it again with the "
    "same name (or `python -m portrait_core sweep --name NAME`): the finished trials are kept.",
    "stopped": "Start it again with the same name to go on: the finished trials are kept.",
}
TRIAL_COLUMNS = {
    "objective": st.column_config.NumberColumn(
        OBJECTIVE, format="%.3f", help="The mean balanced accuracy of the heads, validation split"
    ),
    "run": st.column_config.TextColumn("run", width="large"),
}


def store() -> SweepStore:
    """The sweeps beside the runs folder in use (read at call time, as the runs folder is)."""
    return SweepStore.beside(rv.runs_root())


def _on_model_change() -> None:
    """A new model: its own default space in the text box."""
    st.session_state["sweep_space"] = space_text(default_space(st.session_state["sweep_model"]))


def _fill_missing() -> None:
    models = list(rv.model_catalog())
    if st.session_state.get("sweep_model") not in models:
        st.session_state["sweep_model"] = TRAIN_DEFAULT if TRAIN_DEFAULT in models else models[0]
        _on_model_change()
    st.session_state.setdefault("sweep_attributes", list(ATTRIBUTE_KEYS))
    st.session_state.setdefault("sweep_trials", 20)
    st.session_state.setdefault("sweep_timeout", 0)
    st.session_state.setdefault(
        "sweep_name", f"{st.session_state['sweep_model']}-{datetime.now():%Y%m%d-%H%M}"
    )


# --- Train: the Sweep tab -------------------------------------------------------------------------
def sweep_tab(data_path: str | None, n_pictures: int) -> None:
    """The sweep form and the sweeps with their trials. n_pictures: 0 = no data set to use."""
    _fill_missing()
    with st.container(border=True):
        st.subheader("New sweep")
        top = st.columns([2, 4, 2])
        model = top[0].selectbox(
            "Model",
            list(rv.model_catalog()),
            key="sweep_model",
            persist_state=KEEP,
            on_change=_on_model_change,
        )
        attributes = top[1].multiselect(
            "Attributes (one model, one head each)",
            ATTRIBUTE_KEYS,
            key="sweep_attributes",
            persist_state=KEEP,
            format_func=lambda a: ATTRIBUTES[a].title,
            placeholder="Choose one or several",
        )
        name = top[2].text_input(
            "Name",
            key="sweep_name",
            persist_state=KEEP,
            help="The same name again resumes that sweep.",
        )
        row = st.columns([1, 1, 4])
        trials = row[0].number_input(
            "Trials",
            min_value=1,
            max_value=500,
            step=1,
            key="sweep_trials",
            persist_state=KEEP,
            help="Trials to finish (completed or pruned) in all.",
        )
        timeout = row[1].number_input(
            "Time limit (min)",
            min_value=0,
            step=10,
            key="sweep_timeout",
            persist_state=KEEP,
            help="No trial starts after it (the one running finishes); 0 = none.",
        )
        space = st.text_area(
            "Search space (YAML)",
            key="sweep_space",
            persist_state=KEEP,
            height=170,
            help="A list is a choice, {low, high} a range (log: true for a log scale, step for "
            "whole steps), one value is fixed for every trial (e.g. `epochs: 10`). "
            f"Names for {model}: {', '.join(parameter_names(model))}.",
        )
        left, right = st.columns([1, 5], vertical_alignment="center")
        clicked = left.button(
            "Start sweep",
            key="sweep_start",
            type="primary",
            icon=":material/tune:",
            disabled=not n_pictures,
        )
        if n_pictures:
            right.caption(
                f"Each trial is a run on `{data_path}` ({n_pictures:,} pictures) in "
                f"`{rv.runs_root()}`, chosen by Optuna (TPE) and pruned when it falls behind. "
                "The sweep goes on if you close this tab."
            )
        else:
            right.caption("Choose a data set with pictures in the sidebar to start a sweep.")
        if clicked:
            _start(data_path, model, attributes, name, int(trials), float(timeout), space)

    sweeps = store().list()
    st.subheader("Sweeps")
    if not sweeps:
        st.caption(
            "No sweeps yet. Start one above, or from a terminal (`python -m portrait_core sweep "
            "--model cnn_custom --trials 20`): it appears here too."
        )
        return
    states = {s.name: s.state for s in sweeps}
    names = list(states)
    if st.session_state.get("sweep_select") not in names:
        st.session_state["sweep_select"] = names[0]
    chosen = st.selectbox(
        "Show sweep", names, key="sweep_select", format_func=lambda n: f"{n} · {states[n]}"
    )
    sweep = sweeps[names.index(chosen)]
    if states[chosen] in ("queued", "running"):
        live_sweep(chosen)
    else:
        sweep_trials(sweep)


def _start(
    data_path: str | None,
    model: str,
    attributes: list[str],
    name: str,
    trials: int,
    timeout: float,
    text: str,
) -> None:
    try:
        space = parse_space_text(text, "the search space")
        spec = SweepSpec(
            name=name.strip(),
            data=str(data_path),
            model=model,
            attributes=tuple(attributes),
            trials=trials,
            runs=str(rv.runs_root()),
            timeout_minutes=timeout or None,
        )
        sweep = launch.launch_sweep(spec, space)
    except ValueError as exc:
        st.error(f"**This sweep cannot start:** {exc}.\n\nChange it and press Start sweep again.")
        return
    except OSError as exc:
        st.error(
            f"**The sweep could not be started:** {exc}.\n\n"
            f"Check that `{store().root}` can be written to, then press Start sweep again."
        )
        return
    st.session_state["sweep_select"] = sweep.name
    st.toast(f"Started sweep {sweep.name}", icon=":material/tune:")


@st.fragment(run_every=WATCH_EVERY_S)
def live_sweep(name: str) -> None:
    """A running sweep's trials as they finish; a full rerun once it is over."""
    try:
        sweep = store().get(name)
    except FileNotFoundError:
        st.rerun()
    if sweep.state not in ("queued", "running"):
        st.rerun()
    sweep_trials(sweep)


def sweep_trials(sweep: Sweep) -> None:
    """State, progress, the best trial so far, Stop, and the table of trials."""
    state, spec, rows = sweep.state, sweep.spec, sweep.trials()
    icon, colour = SWEEP_BADGES.get(state, (":material/help:", "gray"))
    st.badge(state, icon=icon, color=colour)
    finished = sum(r["state"] in ("completed", "pruned") for r in rows)
    st.progress(
        min(finished / spec.trials, 1.0),
        text=f"{finished} of {spec.trials} trials finished ({spec.model}, "
        f"{', '.join(ATTRIBUTES[a].title for a in spec.attributes)})",
    )
    status = sweep.status
    if state == "failed":
        st.error(f"**This sweep stopped on an error:** {status.get('error') or 'no reason given'}.")
    elif state in SWEEP_ADVICE:
        reason = f" ({status['reason']})" if status.get("reason") else ""
        st.warning(f"**This sweep is {state}**{reason}. {SWEEP_ADVICE[state]}")
    if state in ("queued", "running"):
        if sweep.stop_requested:
            st.info("Stop requested: the sweep stops after its trial's current batch.")
        elif st.button("Stop sweep", key="sweep_stop", icon=":material/stop:"):
            sweep.request_stop()
            st.info("Stop requested: the sweep stops after its trial's current batch.")
    best = best_trial(rows)
    if best:
        st.caption(
            f"Best so far: trial {best['trial']}, {OBJECTIVE} {best['objective']:.3f} "
            f"(run `{best['run']}`). Compare shows all of it."
        )
    if not rows:
        st.caption("No trial yet: the sweep's process loads TensorFlow first (10–30 s).")
        return
    try:
        params = sweep.params()
    except ValueError as exc:
        st.warning(f"**This sweep's space.json cannot be read:** {exc}")
        return
    st.dataframe(
        trials_frame(rows, params),
        hide_index=True,
        key="sweep_trials_table",
        column_config=TRIAL_COLUMNS,
    )


# --- Compare: the sweep view ----------------------------------------------------------------------
def sweep_comparison() -> None:
    """The chosen sweep's best trial, its trials in parallel coordinates, and importances."""
    sweeps = store().list()
    if not sweeps:
        st.caption(
            "No sweeps yet: the Train page's *Sweep* tab (or `python -m portrait_core sweep`) "
            "tunes a model's settings over many runs."
        )
        return
    names = [s.name for s in sweeps]
    chosen = st.selectbox(
        "Sweep",
        names,
        key="compare_sweep",
        format_func=lambda n: f"{n} · {sweeps[names.index(n)].state}",
    )
    sweep = sweeps[names.index(chosen)]
    try:
        params = sweep.params()
    except ValueError as exc:
        st.warning(f"**This sweep's space.json cannot be read:** {exc}")
        return
    rows = sweep.trials()
    best = best_trial(rows)
    if best is None:
        st.info("No trial of this sweep has completed yet.")
        return
    st.subheader("Best trial")
    cols = st.columns(3)
    cols[0].metric("Trial", best["trial"])
    cols[1].metric(OBJECTIVE, f"{best['objective']:.3f}")
    cols[2].metric("Trials finished", sum(r["state"] in ("completed", "pruned") for r in rows))
    st.dataframe(
        [{"parameter": k, "value": str(v)} for k, v in best["params"].items()]
        + [
            {"parameter": f"val balanced accuracy · {ATTRIBUTES[a].title}", "value": f"{s:.3f}"}
            for a, s in best["scores"].items()
        ],
        hide_index=True,
        key="sweep_best",
    )
    st.caption(
        f"Run `{best['run']}`: its test scores are on the leaderboard above (the sweep chose it "
        "on the validation split, so they are honest), and Predict can use it."
    )

    st.subheader("Trials")
    axes = parallel_coordinates(rows, params)
    scores = axes[-1]["values"]
    figure = go.Figure(
        go.Parcoords(
            line=dict(
                color=scores,
                colorscale="Viridis",
                showscale=True,
                cmin=min(scores),
                cmax=max(scores),
            ),
            dimensions=axes,
        )
    )
    figure.update_layout(height=380, margin=dict(l=60, r=40, t=50, b=20))
    st.plotly_chart(figure, key="sweep_parcoords")
    st.caption(
        f"One line per completed trial ({len(scores)}), coloured by its {OBJECTIVE}; drag along "
        "an axis to pick the trials in a range. Pruned and failed trials are left out."
    )

    st.subheader("Parameter importances")
    try:
        importances = param_importances(sweep)
    except NotEnoughTrials as exc:
        st.info(f"Not yet: {exc}.")
        return
    names = list(importances)[::-1]  # the most important on top
    bars = go.Figure(
        go.Bar(
            x=[importances[n] for n in names],
            y=names,
            orientation="h",
            marker_color="#3366CC",
            texttemplate="%{x:.2f}",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    bars.update_layout(height=80 + 35 * len(names), margin=dict(l=10, r=10, t=10, b=10))
    bars.update_xaxes(range=[0, 1], title="share of the objective's variation")
    st.plotly_chart(bars, key="sweep_importances")
    st.caption(
        "Optuna's importances (PED-ANOVA) over the completed trials, summing to 1: how "
        "differently each parameter is set in the best trials than in all of them. A rough "
        "guide below a few tens of trials."
    )
