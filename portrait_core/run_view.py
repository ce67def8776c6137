"""What the Train and Compare pages show about runs: the model catalogue, the form's defaults,
tidy learning curves, progress and time left, metrics tables, confusion matrices, calibration
errors and the robustness table.

Pure functions over run-folder contents (status.json, history.jsonl, metrics.json), so every
number the pages show is tested without Streamlit. Neither Streamlit nor TensorFlow is imported:
the model catalogue comes from portrait_core/models/catalog.py, which is Keras-free, because
importing Keras costs the Train page 10 s or more and is only needed by the training process.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from portrait_core import leaderboard
from portrait_core.leaderboard import finite
from portrait_core.models.catalog import CATALOG, ModelInfo
from portrait_core.schema import ATTRIBUTES
from portrait_core.training.config import TrainConfig, make_config
from portrait_core.training.runs import FINAL_STATES, Run, RunStore, read_json

PRESETS = ("default", "study")
NOT_CURVES = ("epoch", "seconds", "learning_rate")  # history keys that are not per-head metrics
TOTAL = "total"  # the head name of a multi-output model's summed loss
ETA_EPOCHS = 3  # time left is estimated from the mean of the last few epochs
LOG_TAIL_LINES = 25


# --- runs folder ---------------------------------------------------------------------------------
def runs_root() -> Path:
    """The runs folder in use, read at call time (tests point leaderboard.RUNS at a tmp folder)."""
    return Path(leaderboard.RUNS)


def run_store() -> RunStore:
    return RunStore(runs_root())


# --- model catalogue and the Train form ----------------------------------------------------------
def model_catalog() -> dict[str, ModelInfo]:
    """Every model's name, description, presets and options (Keras-free)."""
    return CATALOG


FORM_FIELDS = (
    "image_size",
    "epochs",
    "batch_size",
    "lr",
    "early_stop_patience",
    "seed",
    "augment",
    "class_weights",
    "ordinal_spread",
    "age_spread",
    "degrade_share",
)


def preset_values(model: str, preset: str, catalog: dict[str, ModelInfo] | None = None) -> dict:
    """A model's preset as flat form values: training settings and builder options side by side."""
    catalog = catalog or model_catalog()
    settings = dict(catalog[model].presets.get(preset, {}))
    return {**settings.pop("options", {}), **settings}


def form_defaults(model: str, preset: str, catalog: dict[str, ModelInfo] | None = None) -> dict:
    """The Train form's starting values: TrainConfig's defaults, then the model's preset."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name in FORM_FIELDS}
    return {**defaults, **preset_values(model, preset, catalog)}


def train_config(data: str, model: str, preset: str = "default", **given) -> TrainConfig:
    """The Train form's config: make_config (Keras-free), the preset overridden by what was given.

    None means "not given". Options the model does not understand are an error naming them,
    before a run folder is made.
    """
    return make_config(data, model, preset, **given)


# --- learning curves -----------------------------------------------------------------------------
def _split_key(key: str, attributes: tuple[str, ...]) -> tuple[str, str, str]:
    """'val_face_shape_accuracy' -> ('face_shape', 'accuracy', 'val'); 'loss' -> (head, 'loss', ...).

    A one-head model logs bare 'loss' / 'accuracy' (Keras drops the head's name), which belong
    to that head; on a several-head model the bare 'loss' is the sum of the heads' losses.
    """
    split = "val" if key.startswith("val_") else "train"
    rest = key.removeprefix("val_")
    for attr in attributes:
        if rest.startswith(attr + "_"):
            return attr, rest[len(attr) + 1 :], split
    head = attributes[0] if len(attributes) == 1 else TOTAL
    return head, rest, split


def curves_frame(history: list[dict], attributes=None) -> pd.DataFrame:
    """Tidy learning curves: one row per (epoch, head, metric, split) with its value.

    attributes: the run's heads (config["attributes"]); None guesses them from the keys.
    Non-finite values (logged as null) are left out, so a chart shows a gap, not a crash.
    """
    if attributes is None:
        attributes = sorted(
            {
                k.removeprefix("val_").rpartition("_")[0]
                for row in history
                for k in row
                if k not in NOT_CURVES and "_" in k.removeprefix("val_")
            }
        )
    attributes = tuple(attributes)
    rows = []
    for record in history:
        for key, value in record.items():
            if key in NOT_CURVES or value is None:
                continue
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            head, metric, split = _split_key(key, attributes)
            rows.append(
                {
                    "epoch": int(record["epoch"]),
                    "head": head,
                    "metric": metric,
                    "split": split,
                    "value": float(value),
                }
            )
    columns = ["epoch", "head", "metric", "split", "value"]
    return pd.DataFrame(rows, columns=columns).sort_values(["head", "metric", "split", "epoch"])


def curve_keys(histories: list[list[dict]]) -> list[str]:
    """History keys worth plotting across runs: val_loss first, then the other val_, then train."""
    keys = {k for history in histories for row in history for k in row if k not in NOT_CURVES}
    return sorted(keys, key=lambda k: (k != "val_loss", not k.startswith("val_"), k))


def overlay_frame(histories: dict[str, list[dict]], key: str) -> pd.DataFrame:
    """(run, epoch, value) of one history key for several runs, for overlaid curves."""
    rows = [
        {"run": run_id, "epoch": int(row["epoch"]), "value": float(row[key])}
        for run_id, history in histories.items()
        for row in history
        if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])
    ]
    return pd.DataFrame(rows, columns=["run", "epoch", "value"])


# --- progress and time -----------------------------------------------------------------------------
def progress(status: dict, history: list[dict], now: float | None = None) -> dict:
    """Where a run stands: epoch x of y, the share of the current epoch done, elapsed, time left.

    fraction: the share of the current epoch's batches done (1.0 between epochs and at the end);
    overall: the share of all epochs. eta_s is None until an epoch has finished (the first is
    slow anyway: it builds the graph and fills the cache), and for a run that is not going on.
    Early stopping can end a run sooner than eta_s says: it is an upper bound.
    """
    now = time.time() if now is None else now
    state = status.get("state", "unknown")
    epochs = int(status.get("epochs") or 0)
    done = len(history)
    epoch = int(status.get("epoch") or done)
    steps = int(status.get("steps") or 0)
    batch = int(status.get("batch") or 0)
    if state in FINAL_STATES:
        fraction = 1.0
    elif epoch > done and steps:
        fraction = min(batch / steps, 1.0)
    else:
        fraction = 1.0 if done else 0.0
    in_epoch = fraction if epoch > done and state not in FINAL_STATES else 0.0
    overall = min((done + in_epoch) / epochs, 1.0) if epochs else 0.0
    if state in FINAL_STATES:
        overall = 1.0
    started = status.get("started") or status.get("created")
    end = status.get("finished") if state in FINAL_STATES else None
    elapsed = max((end or now) - started, 0.0) if started else 0.0
    eta = None
    if state == "running" and epochs and done:
        durations = [float(r["seconds"]) for r in history if r.get("seconds") is not None]
        recent = durations[1:] if len(durations) > 1 else durations  # the first epoch is slower
        if recent:
            per_epoch = statistics.fmean(recent[-ETA_EPOCHS:])
            eta = max(epochs - done - in_epoch, 0.0) * per_epoch
    return {
        "state": state,
        "epoch": epoch,
        "epochs": epochs,
        "batch": batch,
        "steps": steps,
        "fraction": fraction,
        "overall": overall,
        "elapsed_s": elapsed,
        "eta_s": eta,
        "evaluating": bool(status.get("evaluating")),
    }


def format_duration(seconds: float | None) -> str:
    """42 -> '42 s', 185 -> '3 min 05 s', 7384 -> '2 h 03 min'; None -> '–'."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _speed_key(train: dict) -> tuple:
    """What sets a run's speed per picture: the model, its size, and whether the frozen layers'
    cache can apply (augmentation, the layers trained, random or given weights)."""
    options = train.get("options") or {}
    return (
        train.get("model"),
        train.get("image_size"),
        bool(train.get("augment", True)),
        options.get("unfreeze"),
        options.get("weights") in ("none", "random"),
    )


def duration_estimate(config: TrainConfig, n_pictures: int, runs: list[Run]) -> dict | None:
    """How long `config` would train on `n_pictures`, from the speed of earlier runs here.

    The speed is training pictures per second over the epochs after the first (median), from
    the runs in the runs folder with the same model, picture size, augmentation and frozen
    layers (`_speed_key`): their config.json (split sizes, frozen_cache) and history.jsonl
    (seconds per epoch). The first epoch adds the frozen layers' pass where those runs had one.
    Early stopping can end a run sooner: the estimate is for all its epochs. None: no such run
    has finished an epoch yet (or the data set is empty).
    """
    key = _speed_key(config.to_dict())
    rates, fills, used = [], [], []
    for run in runs:
        described = run.config
        if _speed_key(described.get("train") or {}) != key:
            continue
        seconds = [float(r["seconds"]) for r in run.history if r.get("seconds")]
        sizes = (described.get("data") or {}).get("split_sizes") or {}
        train = int(sizes.get("train") or 0)
        cap = (described.get("train") or {}).get("max_steps_per_epoch")
        if cap:
            train = min(train, cap * int(described["train"].get("batch_size") or 1))
        if not seconds or not train:
            continue
        rates.append(train / statistics.median(seconds[1:] or seconds))
        cache = described.get("frozen_cache") or {}
        if cache.get("fill_seconds") and sizes.get("val") is not None:
            fills.append(cache["fill_seconds"] / (train + int(sizes["val"])))
        used.append(run.id)
    if not rates or n_pictures <= 0:
        return None
    rate = statistics.median(rates)
    train = n_pictures * config.split[0]
    if config.max_steps_per_epoch:
        train = min(train, config.max_steps_per_epoch * config.batch_size)
    per_epoch = train / rate
    fill = (
        statistics.median(fills) * n_pictures * (config.split[0] + config.split[1]) if fills else 0
    )
    return {
        "seconds": config.epochs * per_epoch + fill,
        "per_epoch_s": per_epoch,
        "pictures_per_s": rate,
        "cache_fill_s": fill,
        "runs": used,
    }


def describe_estimate(estimate: dict | None, config: TrainConfig) -> str:
    """The Train page's line above Start."""
    where = f"{config.model} at {config.image_size} px"
    if estimate is None:
        return (
            f"No time estimate yet: no run of {where} with these settings (augmentation, "
            "layers trained) has finished an epoch in this runs folder."
        )
    fill = (
        f", plus {format_duration(estimate['cache_fill_s'])} computing the frozen layers once"
        if estimate["cache_fill_s"]
        else ""
    )
    n = len(estimate["runs"])
    return (
        f"About {format_duration(estimate['seconds'])} for {config.epochs} epochs "
        f"({format_duration(estimate['per_epoch_s'])} each{fill}; less if early stopping ends "
        f"it), from {estimate['pictures_per_s']:.1f} training pictures/s measured in {n} earlier "
        f"run{'s' if n != 1 else ''} of {where} here."
    )


# --- metrics ---------------------------------------------------------------------------------------
def metrics_table(metrics: dict | None) -> pd.DataFrame:
    """Test metrics per attribute in schema order; attributes with no labelled test row left out."""
    columns = [
        "attribute",
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "majority_baseline",
        "majority_class",
        "n_test",
    ]
    rows = []
    scored = (metrics or {}).get("attributes", {})
    for attr in (a for a in ATTRIBUTES if a in scored):
        m = scored[attr]
        if not m.get("n"):
            continue
        rows.append(
            {
                "attribute": ATTRIBUTES[attr].title,
                "accuracy": m["accuracy"],
                "balanced_accuracy": m["balanced_accuracy"],
                "macro_f1": m["macro_f1"],
                "majority_baseline": m["majority_baseline"]["accuracy"],
                "majority_class": m.get("majority_class"),
                "n_test": m["n"],
            }
        )
    return pd.DataFrame(rows, columns=columns)


def scored_attributes(metrics: dict | None) -> list[str]:
    """Attributes (schema order) with a confusion matrix in metrics.json."""
    scored = (metrics or {}).get("attributes", {})
    return [a for a in ATTRIBUTES if scored.get(a, {}).get("confusion_matrix") is not None]


def confusion_frame(metrics: dict, attribute: str) -> pd.DataFrame:
    """The confusion matrix of one head: true classes as rows, predicted as columns."""
    classes = list(ATTRIBUTES[attribute].classes)
    matrix = metrics["attributes"][attribute]["confusion_matrix"]
    return pd.DataFrame(
        matrix,
        index=pd.Index(classes, name="true"),
        columns=pd.Index(classes, name="predicted"),
    )


def per_class_frame(metrics: dict, attribute: str) -> pd.DataFrame:
    """(class, precision, recall, f1, support) of one head, classes in schema order."""
    per_class = metrics["attributes"][attribute]["per_class"]
    rows = [{"class": c, **per_class[c]} for c in ATTRIBUTES[attribute].classes if c in per_class]
    return pd.DataFrame(rows, columns=["class", "precision", "recall", "f1", "support"])


# --- calibration and robustness (metrics.json since issue 11; older runs have neither) -------------
# A degraded score this much below the clean one is flagged. On a 24-picture test split one
# picture moves accuracy by 0.04, so a smaller flag would mark noise.
DROP_FLAG = 0.05
CLEAN = "clean"  # the robustness table's first row: the undegraded score, as metrics.json has it


def _scores(metrics: dict | None) -> dict[str, dict]:
    """metrics.json's per-attribute entries with a labelled test row."""
    scored = (metrics or {}).get("attributes", {})
    return {a: m for a, m in scored.items() if isinstance(m, dict) and m.get("n")}


def calibration_state(entry: dict) -> str:
    """One head's calibration in words, from its metrics.json entry."""
    if finite(entry.get("ece_before")) is None:
        return "not measured: the run predates calibration"
    if finite(entry.get("temperature")) is None:
        return "uncalibrated: no temperature for this head"
    return "temperature-scaled (T fitted on the validation split)"


def calibration_frame(metrics_by_run: dict[str, dict | None]) -> pd.DataFrame:
    """One row per attribute (schema order) and run (in the order given): the expected
    calibration error on the test split before and after temperature scaling, the temperature,
    and in words whether the head is calibrated. Numbers a run lacks are None."""
    columns = ["attribute", "run", "ece_before", "ece_after", "temperature", "calibration"]
    rows = []
    for attr in ATTRIBUTES:
        for run_id, metrics in metrics_by_run.items():
            entry = _scores(metrics).get(attr)
            if entry is None:
                continue
            rows.append(
                {
                    "attribute": ATTRIBUTES[attr].title,
                    "run": run_id,
                    "ece_before": finite(entry.get("ece_before")),
                    "ece_after": finite(entry.get("ece_after")),
                    "temperature": finite(entry.get("temperature")),
                    "calibration": calibration_state(entry),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def _degradations(metrics: dict | None) -> dict[str, dict]:
    section = (metrics or {}).get("robustness")
    found = section.get("degradations") if isinstance(section, dict) else None
    if not isinstance(found, dict):
        return {}
    return {name: d for name, d in found.items() if isinstance(d, dict)}


def robustness_measured(metrics: dict | None) -> bool:
    """Whether metrics.json has the robustness section (runs trained before it do not)."""
    return bool(_degradations(metrics))


def robustness_note(metrics: dict | None) -> str:
    """What a run's robustness numbers were measured on, in words."""
    if not robustness_measured(metrics):
        return "not measured: the run predates the robustness evaluation"
    section = metrics["robustness"]
    n, split = section.get("n_images"), section.get("split", "test")
    where = "the whole data set" if split == "all" else f"the {split} split"
    what = f"the {n} pictures of {where}" if isinstance(n, int) else where
    seconds = finite(section.get("seconds"))
    if seconds is None:
        took = ""
    else:
        took = f", in {format_duration(seconds)}" if seconds >= 1 else ", in under a second"
    return f"{len(_degradations(metrics))} degradations of {what}{took}"


def robustness_table(
    metrics_by_run: dict[str, dict | None], attribute: str, measure: str = leaderboard.RANK_BY
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, worse) for one attribute. Rows: the clean score (CLEAN), then each degradation
    by its title, in metrics.json's order. Columns: one per run that scored the attribute, its
    `measure`; for a single run, `measure` and `drop` (clean minus degraded: positive = worse).
    A degradation a run did not measure is NaN. `worse` has the table's shape: True where the
    drop is over DROP_FLAG. Both are empty when no run scored the attribute.
    """
    runs = {i: m for i, m in metrics_by_run.items() if attribute in _scores(m)}
    if not runs:
        return pd.DataFrame(), pd.DataFrame()
    titles = {CLEAN: CLEAN}
    for metrics in runs.values():
        for name, d in _degradations(metrics).items():
            titles.setdefault(name, str(d.get("title") or name))
    scores, drops = {}, {}
    for run_id, metrics in runs.items():
        clean = finite(_scores(metrics)[attribute].get(measure))
        scores[run_id], drops[run_id] = {CLEAN: clean}, {CLEAN: None if clean is None else 0.0}
        for name, d in _degradations(metrics).items():
            heads = d.get("attributes")
            entry = heads.get(attribute) if isinstance(heads, dict) else None
            entry = entry if isinstance(entry, dict) and entry.get("n") else {}
            score = finite(entry.get(measure))
            drop = finite(entry.get(f"{measure}_drop"))
            if drop is None and None not in (score, clean):
                drop = clean - score
            scores[run_id][name], drops[run_id][name] = score, drop
    index = pd.Index(list(titles.values()), name="condition")

    def frame(values: dict[str, dict]) -> pd.DataFrame:
        return pd.DataFrame(
            {run_id: [v.get(name) for name in titles] for run_id, v in values.items()},
            index=index,
            dtype=float,
        )

    score_frame, drop_frame = frame(scores), frame(drops)
    if len(runs) == 1:
        (run_id,) = runs
        score_frame = pd.DataFrame(
            {measure: score_frame[run_id], "drop": drop_frame[run_id]}, index=index
        )
        drop_frame = pd.DataFrame({measure: drop_frame[run_id], "drop": drop_frame[run_id]})
    return score_frame, drop_frame.gt(DROP_FLAG)


# --- runs as a table -------------------------------------------------------------------------------
def runs_frame(runs: list[Run], now: float | None = None) -> pd.DataFrame:
    """One row per run (newest first): what the Train page's list shows, with what is wrong
    with a run's folder in `problems` ('' when nothing is)."""
    now = time.time() if now is None else now
    rows = []
    for run in runs:
        status = run.status
        request = run_request(run)
        epochs = status.get("epochs") or request.get("epochs")
        started = status.get("started") or status.get("created")
        rows.append(
            {
                "run": run.id,
                "state": run.state,
                "model": request.get("model"),
                "attributes": ", ".join(request.get("attributes") or []),
                "epoch": f"{status.get('epoch', 0)}/{epochs or '?'}",
                "started": datetime.fromtimestamp(started).replace(microsecond=0)
                if isinstance(started, (int, float)) and started
                else None,
                "problems": "; ".join(run.problems),
            }
        )
    columns = ["run", "state", "model", "attributes", "epoch", "started", "problems"]
    return pd.DataFrame(rows, columns=columns)


def damaged_runs(runs: list[Run]) -> dict[str, list[str]]:
    """{run id: what is wrong with its folder} for the runs with something wrong (Run.problems)."""
    return {run.id: problems for run in runs if (problems := run.problems)}


def best_epoch(history: list[dict]) -> int | None:
    """The epoch with the lowest finite val_loss: the one model.keras holds (BestModelSaver)."""
    scored = [
        (row["val_loss"], row["epoch"])
        for row in history
        if isinstance(row.get("val_loss"), (int, float)) and math.isfinite(row["val_loss"])
    ]
    return min(scored)[1] if scored else None


def _request(run: Run) -> dict:
    return read_json(run.path / "request.json", {})


def run_request(run: Run) -> dict:
    """The run's training settings: config.json's once training began, request.json's before."""
    train = run.config.get("train")
    return train if isinstance(train, dict) and train else _request(run)


def run_attributes(run: Run) -> tuple[str, ...]:
    return tuple(run.config.get("attributes") or run_request(run).get("attributes") or ())


def log_tail(run: Run, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of the run's train.log ('' when there is none)."""
    try:
        text = (run.path / "train.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
